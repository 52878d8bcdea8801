"""Several people through the gateway (issue 14): the answer's ``faces``, the deciding face, the overlay drawing
every face with its own Grad-CAM, and jobs and batch carrying the same per-face results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from deepfake_core.face_tracks import iou
from tests.gateway.conftest import GatewayServer, VideoServer
from tests.gateway.jobs.jobs_helpers import wait_job
from tests.gateway.test_predict import fetch_output, read_video
from tests.people_media import TWO_PEOPLE, people_video

FRAMES = 8
NAME = "two-people.mp4"


@pytest.fixture(scope="module")
def two_people(video_server: VideoServer) -> list[list[Any]]:
    """The two-person clip (the smaller face self-blended), served by the video server; the true boxes."""
    return people_video(video_server.root / NAME, TWO_PEOPLE, seconds=1.6)


@pytest.fixture(scope="module")
def answers(gateway: GatewayServer, video_server: VideoServer, two_people: list) -> dict[bool, dict[str, Any]]:
    """The clip's answer by upload, with and without heatmaps."""
    data = (video_server.root / NAME).read_bytes()
    out = {}
    with gateway.client() as client:
        for heatmap in (True, False):
            r = client.post(
                "/api/v1/predict/upload",
                files={"file": (NAME, data, "video/mp4")},
                data={"num_frames": str(FRAMES), "heatmap": str(heatmap).lower()},
            )
            assert r.status_code == 200, r.text
            out[heatmap] = r.json()
    return out


def test_the_answer_names_the_altered_smaller_face(answers: dict, two_people: list) -> None:
    body = answers[True]
    faces = body["faces"]
    assert [f["track_id"] for f in faces] == [0, 1] and body["faces_not_analysed"] == 0
    for face, truth in zip(faces, two_people, strict=True):  # track 0 is the larger person, track 1 the altered one
        assert len(face["frames"]) == FRAMES
        for frame in face["frames"]:
            assert iou(np.asarray(truth[frame["frame_index"]]), np.asarray([frame["box"]]))[0] >= 0.5
        assert face["first_seen"] == frame_time(face, 0) and face["last_seen"] == frame_time(face, -1)
    real, altered = faces
    assert altered["probability_fake"] > real["probability_fake"]
    assert body["predicted_class"] == "FAKE" and body["deciding_face"] == 1 and altered["deciding"]
    assert body["probability_fake"] == altered["probability_fake"] and not real["deciding"]
    # the video-level frames are the deciding face's
    assert [f["box"] for f in body["frame_scores"]] == [f["box"] for f in altered["frames"]]
    assert answers[False]["faces"] == faces  # heatmaps change the overlay, not the verdicts


def frame_time(face: dict[str, Any], k: int) -> float:
    return float(face["frames"][k]["timestamp"])


def test_the_overlay_draws_every_face_with_its_own_heatmap(
    client: httpx.Client,
    gateway: GatewayServer,
    video_server: VideoServer,
    answers: dict,
    two_people: list,
    tmp_path: Path,
) -> None:
    on, off = answers[True], answers[False]
    assert on["timings"]["gradcam"] > 0.0
    with_cam = fetch_output(client, on, gateway, tmp_path / "on.mp4")["frames"]
    without = fetch_output(client, off, gateway, tmp_path / "off.mp4")["frames"]
    source = read_video(video_server.root / NAME)["frames"]
    for person, truth in enumerate(two_people):
        inside_cam, inside_box = [], []
        for frame in on["faces"][person]["frames"]:
            index = frame["frame_index"]
            x1, y1, x2, y2 = (int(round(v)) for v in truth[index])
            cam = np.abs(with_cam[index].astype(np.int16) - without[index].astype(np.int16)).mean(axis=2)
            inside_cam.append(float(cam[y1:y2, x1:x2].mean()))
            # the box outline: along the top edge of the face's box (as served), the overlay without heatmap differs
            # from the source
            bx1, by1, bx2, _ = (int(round(v)) for v in frame["box"])
            edge = np.abs(without[index].astype(np.int16) - source[index].astype(np.int16)).mean(axis=2)
            inside_box.append(float(edge[max(0, by1 - 3) : by1 + 3, bx1:bx2].mean(axis=1).max()))
        assert min(inside_cam) > 20.0, (person, inside_cam)  # Grad-CAM on this face
        assert min(inside_box) > 20.0, (person, inside_box)  # its box is drawn


def test_predict_by_url_jobs_and_batch_carry_the_faces(
    client: httpx.Client, video_server: VideoServer, answers: dict
) -> None:
    url = video_server.url(NAME)
    options = {"num_frames": FRAMES, "heatmap": False}
    by_url = client.post("/api/v1/predict", json={"url": url, **options})
    assert by_url.status_code == 200, by_url.text
    assert by_url.json()["predicted_class"] == "FAKE" and by_url.json()["deciding_face"] == 1
    r = client.post("/api/v1/jobs", json={"url": url, **options})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["jobs"][0]["id"])
    batch = client.post("/api/v1/predict/batch", json={"urls": [url], **options})
    assert batch.status_code == 200, batch.text
    for result in (by_url.json(), job["result"], batch.json()["results"][0]["result"]):
        assert result["faces"] == answers[False]["faces"]
        assert result["deciding_face"] == 1 and result["faces_not_analysed"] == 0
