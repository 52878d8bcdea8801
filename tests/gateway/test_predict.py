"""POST /api/v1/predict end to end: real HTTP into the gateway, the real Triton, real overlay videos."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest

from deepfake_core.face_tracks import iou
from tests.gateway.conftest import FPS, GatewayServer, VideoServer, tmp_files
from triton_runtime.server import DEFAULT_MODEL_REPOSITORY

FACE_FRAMES = 30  # face.mp4: 1.2 s at 25 fps


def read_video(path: Path) -> dict[str, Any]:
    """Codec, pixel format, size, fps and every frame (RGB) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": float(stream.average_rate or 0),
            "frames": frames,
        }


def fetch_output(client: httpx.Client, body: dict[str, Any], gateway: GatewayServer, dest: Path) -> dict[str, Any]:
    """Download the overlay video from its output_url (served by the gateway) and read it."""
    url = body["output_url"]
    assert url and url.startswith(f"{gateway.url}/media/") and url.endswith(".mp4"), url
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    dest.write_bytes(r.content)
    return read_video(dest)


def check_verdict(body: dict[str, Any], frames: int) -> None:
    """The response's fields and their consistency."""
    assert body["predicted_class"] in ("REAL", "FAKE")
    p = body["probability_fake"]
    served = json.loads((DEFAULT_MODEL_REPOSITORY / "temporal_classifier" / "1" / "metadata.json").read_text())
    assert 0.0 <= p <= 1.0 and body["threshold"] == served["threshold"]  # the served checkpoint's threshold
    expected_conf = 100 * (p if body["predicted_class"] == "FAKE" else 1 - p)
    assert body["confidence"] == pytest.approx(expected_conf, abs=0.01)
    assert (body["predicted_class"] == "FAKE") == (p >= body["threshold"])
    assert re.fullmatch(r"\d+\.\d\d sec\.", body["execution_time"]), body["execution_time"]
    assert body["frames_analyzed"] == frames == len(body["frame_scores"])
    assert set(body["timings"]) == {"download", "inference", "gradcam", "render", "upload"}
    assert all(v >= 0 for v in body["timings"].values()) and body["timings"]["inference"] > 0
    total = float(body["execution_time"].split()[0])
    assert sum(body["timings"].values()) <= total + 0.02
    metadata = json.loads((DEFAULT_MODEL_REPOSITORY / "temporal_classifier" / "1" / "metadata.json").read_text())
    assert body["model"] == {"name": "deepfake_detector", "version": metadata["version"]}
    assert body["errors"] == [] and re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    indices = [f["frame_index"] for f in body["frame_scores"]]
    assert indices == sorted(indices) and len(set(indices)) == frames


def test_predict_by_url(
    client: httpx.Client, gateway: GatewayServer, video_server: VideoServer, face_boxes: list, tmp_path: Path
) -> None:
    r = client.post("/api/v1/predict", json={"url": video_server.url("face.mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    check_verdict(body, frames=8)  # the gateway's configured default
    assert body["request_id"] == r.headers["x-request-id"]
    assert body["heatmap"] is True and body["timings"]["gradcam"] > 0
    assert body["faces_detected"] >= 7
    assert body["video"] == {"width": 640, "height": 360, "fps": pytest.approx(FPS), "frames": FACE_FRAMES}
    truth = np.asarray(face_boxes, dtype=np.float32)
    for f in body["frame_scores"]:
        assert f["timestamp"] == pytest.approx(f["frame_index"] / FPS, abs=1e-3)
        if f["box"] is not None:
            assert 0.0 <= f["score"] <= 1.0
            assert float(iou(truth[f["frame_index"]], np.asarray([f["box"]], np.float32))[0]) >= 0.5

    out = fetch_output(client, body, gateway, tmp_path / "overlay.mp4")
    assert (out["codec"], out["pix_fmt"]) == ("h264", "yuv420p")
    assert (out["width"], out["height"]) == (640, 360)  # under output_max_side: kept
    assert len(out["frames"]) == FACE_FRAMES and out["fps"] == pytest.approx(FPS, rel=1e-3)
    partial = client.get(body["output_url"], headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206 and len(partial.content) == 100
    assert tmp_files(gateway) == []


@pytest.mark.parametrize("path", ["/api/v1/predict/upload", "/api/v1/predict"])
def test_predict_by_upload(
    client: httpx.Client, gateway: GatewayServer, video_server: VideoServer, tmp_path: Path, path: str
) -> None:
    data = (video_server.root / "face.mp4").read_bytes()
    by_url = client.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), "num_frames": 6}).json()
    r = client.post(path, files={"file": ("face.mp4", data, "video/mp4")}, data={"num_frames": "6", "heatmap": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    check_verdict(body, frames=6)
    assert body["probability_fake"] == pytest.approx(by_url["probability_fake"], abs=1e-6)  # same video, same answer
    assert [f["frame_index"] for f in body["frame_scores"]] == [f["frame_index"] for f in by_url["frame_scores"]]
    out = fetch_output(client, body, gateway, tmp_path / "overlay.mp4")
    assert out["codec"] == "h264" and len(out["frames"]) == FACE_FRAMES
    assert tmp_files(gateway) == []


def test_heatmap_changes_the_face_box_only(
    client: httpx.Client, gateway: GatewayServer, video_server: VideoServer, face_boxes: list, tmp_path: Path
) -> None:
    """The same video with and without Grad-CAM: overlays differ inside the face box, not far from it."""
    url = video_server.url("face.mp4")
    on = client.post("/api/v1/predict", json={"url": url, "heatmap": True}).json()
    off = client.post("/api/v1/predict", json={"url": url, "heatmap": False}).json()
    assert on["heatmap"] is True and off["heatmap"] is False
    assert off["timings"]["gradcam"] == 0.0 and on["timings"]["gradcam"] > 0.0
    assert off["probability_fake"] == pytest.approx(on["probability_fake"], abs=1e-6)
    with_cam = fetch_output(client, on, gateway, tmp_path / "on.mp4")["frames"]
    without = fetch_output(client, off, gateway, tmp_path / "off.mp4")["frames"]
    assert len(with_cam) == len(without) == FACE_FRAMES
    analysed = [f["frame_index"] for f in on["frame_scores"] if f["box"] is not None]
    inside, far = [], []
    for index in analysed:
        x1, y1, x2, y2 = (int(round(v)) for v in face_boxes[index])
        diff = np.abs(with_cam[index].astype(np.int16) - without[index].astype(np.int16)).mean(axis=2)
        inside.append(diff[y1:y2, x1:x2].mean())
        mask = np.ones_like(diff, dtype=bool)
        mask[max(0, y1 - 40) : y2 + 40, max(0, x1 - 40) : x2 + 40] = False
        mask[:60] = mask[-60:] = False  # banners at the top or bottom may carry per-video text
        far.append(diff[mask].mean())
    # Measured: ~50 grey levels inside the box; far away only the encoder's drift (< 2, it grows along a GOP).
    assert min(inside) > 20.0, inside
    assert max(far) < 3.0 and max(far) < min(inside) / 10, far


def test_faceless_video_is_no_face(
    client: httpx.Client, gateway: GatewayServer, video_server: VideoServer, tmp_path: Path
) -> None:
    r = client.post("/api/v1/predict", json={"url": video_server.url("faceless.mp4"), "heatmap": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predicted_class"] == "NO_FACE" and body["confidence"] is None
    assert body["faces_detected"] == 0 and body["probability_fake"] == pytest.approx(0.5)
    assert all(f["score"] is None and f["box"] is None for f in body["frame_scores"])
    assert body["heatmap"] is False and body["timings"]["gradcam"] == 0.0  # no face, no Grad-CAM
    out = fetch_output(client, body, gateway, tmp_path / "noface.mp4")  # the overlay still exists (banner)
    assert out["codec"] == "h264" and len(out["frames"]) == 25
    assert tmp_files(gateway) == []
