"""Every person in the video gets a verdict (issue 14), through the real local Triton server: generated clips with
two, three and five people (tests/people_media.py), one who enters and leaves, and the single-face answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clients.triton_client import DetectorClient
from deepfake_core import constants as C
from deepfake_core.ensemble_contract import DetectorResult
from deepfake_core.face_tracks import iou
from deepfake_core.paths import BUNDLED_CHECKPOINT
from tests.media import face_video
from tests.people_media import FIVE_PEOPLE, THREE_PEOPLE, TWO_PEOPLE, VISITOR, people_video
from triton_runtime.process import TritonProcess

CLIPS = {"two": TWO_PEOPLE, "three": THREE_PEOPLE, "five": FIVE_PEOPLE, "visitor": VISITOR}
Truth = list[list[tuple[float, float, float, float] | None]]


@pytest.fixture(scope="module")
def client(triton: TritonProcess) -> Iterator[DetectorClient]:
    with DetectorClient(triton.grpc_url, "grpc") as made:
        yield made


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Truth]]:
    """Each clip's file and its true boxes."""
    d = tmp_path_factory.mktemp("people")
    return {name: (d / f"{name}.mp4", people_video(d / f"{name}.mp4", people)) for name, people in CLIPS.items()}


@pytest.fixture(scope="module")
def answers(client: DetectorClient, clips: dict[str, tuple[Path, Truth]]) -> dict[str, tuple[DetectorResult, Truth]]:
    """Each clip's answer over gRPC (every verdict output and the deciding face's crops) and its true boxes."""
    return {name: (client.detect(path.read_bytes(), with_crops=True), truth) for name, (path, truth) in clips.items()}


def same_person(result: DetectorResult, k: int, person: list[tuple[float, float, float, float] | None]) -> bool:
    """Track k has a face exactly in the sampled frames where the person is, overlapping their box (IoU >= 0.5)."""
    assert result.track_boxes is not None and result.track_has_face is not None
    for i, f in enumerate(result.frame_indices):
        box = person[int(f)]
        if (box is not None) != bool(result.track_has_face[k, i]):
            return False
        if box is not None and float(iou(np.asarray(box), result.track_boxes[k, i][None])[0]) < 0.5:
            return False
    return True


def match(result: DetectorResult, truth: Truth) -> list[int]:
    """For each true person, the analysed track that is that person (`same_person`), or -1."""
    assert result.track_boxes is not None
    tracks = range(len(result.track_boxes))
    return [next((k for k in tracks if same_person(result, k, person)), -1) for person in truth]


def test_the_smaller_altered_face_decides_a_fake_verdict(answers: dict) -> None:
    result, truth = answers["two"]
    big, altered = match(result, truth)
    assert sorted([big, altered]) == [0, 1], "each person is one track with the known boxes"
    assert TWO_PEOPLE[1].altered and TWO_PEOPLE[1].height < TWO_PEOPLE[0].height
    assert big == 0, "the larger face is the more prominent track"
    probs = result.track_prob_fake
    assert probs is not None and probs.shape == (2,)
    print(f"two people: real {probs[big]:.4f}, self-blended {probs[altered]:.4f}")
    assert probs[altered] > probs[big]
    assert result.deciding_face == altered and result.prob_fake == pytest.approx(float(probs[altered]))
    assert result.predicted_class() == "FAKE"
    answer = result.to_json()
    assert answer["deciding_face"] == altered and [f["track_id"] for f in answer["faces"]] == [0, 1]
    assert answer["faces"][altered]["predicted_class"] == "FAKE" and answer["faces"][altered]["deciding"]


def test_the_single_face_outputs_are_the_deciding_faces(answers: dict) -> None:
    result, _ = answers["two"]
    d = result.deciding_face
    assert result.track_boxes is not None and result.track_frame_scores is not None
    np.testing.assert_array_equal(result.face_boxes, result.track_boxes[d])
    np.testing.assert_array_equal(result.has_face, result.track_has_face[d])  # type: ignore[index]
    np.testing.assert_allclose(result.frame_scores, result.track_frame_scores[d])
    assert result.face_crops is not None and result.landmarks is not None
    # the crops are the deciding face's: its landmarks (original pixels) fall inside its boxes
    inside = (result.landmarks[..., 0] >= result.face_boxes[:, None, 0]) & (
        result.landmarks[..., 0] <= result.face_boxes[:, None, 2]
    )
    assert inside[result.has_face].all()


def test_three_people_give_three_faces(answers: dict) -> None:
    result, truth = answers["three"]
    assert result.track_prob_fake is not None and len(result.track_prob_fake) == 3
    assert sorted(match(result, truth)) == [0, 1, 2] and result.unanalysed_faces == 0
    assert len(result.to_json()["faces"]) == 3


def test_five_people_give_max_faces_and_say_how_many_were_left_out(answers: dict) -> None:
    result, truth = answers["five"]
    assert C.MAX_FACES == 4
    assert result.track_prob_fake is not None and len(result.track_prob_fake) == C.MAX_FACES
    assert result.unanalysed_faces == len(FIVE_PEOPLE) - C.MAX_FACES
    found = match(result, truth)
    # the four largest people (the clip's sizes shrink from left to right), most prominent first
    assert found[:4] == [0, 1, 2, 3] and found[4] == -1
    assert result.to_json()["faces_not_analysed"] == 1


def test_a_face_that_enters_and_leaves_keeps_one_track(answers: dict) -> None:
    result, truth = answers["visitor"]
    assert result.track_has_face is not None and len(result.track_has_face) == 2
    assert match(result, truth) == [0, 1]  # one track holds the visitor in every sampled frame they are in, only there
    seen = np.flatnonzero(result.track_has_face[1])
    assert 0 < len(seen) < len(result.frame_indices)
    face = result.to_json()["faces"][1]
    assert face["first_seen"] == pytest.approx(float(result.timestamps[seen[0]]), abs=1e-3) and face["first_seen"] > 0
    assert face["last_seen"] < float(result.timestamps[-1])


def test_a_single_face_answer_is_as_before(client: DetectorClient, tmp_path: Path) -> None:
    """One face: one track, which decides; the video's outputs are that track's, the JSON names it."""
    path = tmp_path / "one.mp4"
    truth = face_video(path, width=640, height=360, fps=25, seconds=1.6)
    result = client.detect(path.read_bytes(), num_frames=8)
    assert result.track_prob_fake is not None and result.track_boxes is not None
    assert result.track_prob_fake.shape == (1,) and result.deciding_face == 0 and result.unanalysed_faces == 0
    assert float(result.track_prob_fake[0]) == pytest.approx(result.prob_fake)
    np.testing.assert_array_equal(result.track_boxes[0], result.face_boxes)
    assert result.has_face.all()
    assert (
        min(float(iou(np.asarray(truth[f]), result.face_boxes[i][None])[0]) for i, f in enumerate(result.frame_indices))
        >= 0.5
    )
    answer = result.to_json()
    assert [f["track_id"] for f in answer["faces"]] == [0] and answer["deciding_face"] == 0
    assert answer["faces"][0]["probability_fake"] == answer["probability_fake"]


def test_faceless_video_has_no_faces(client: DetectorClient, tmp_path: Path) -> None:
    from tests.media import faceless_video

    path = tmp_path / "none.mp4"
    faceless_video(path, width=320, height=180, seconds=0.6)
    result = client.detect(path.read_bytes(), num_frames=4)
    assert not result.face_found and result.prob_fake == 0.5
    assert result.track_has_face is not None and not result.track_has_face.any()
    assert result.to_json()["faces"] == [] and result.to_json()["deciding_face"] is None


def test_the_evaluation_scores_every_face_as_triton_does(
    triton: TritonProcess, model_repository: Path, clips: dict[str, tuple[Path, Truth]], answers: dict
) -> None:
    """training.evaluate's twin path scores every analysed face and takes the deciding face's score, as the ensemble
    does: on the two-people clip that is the smaller, altered face, not the main one."""
    from training import evaluate
    from training.datasets import Sample

    meta = json.loads((model_repository / "temporal_classifier" / "1" / "metadata.json").read_text())
    checkpoint = BUNDLED_CHECKPOINT if meta.get("checkpoint_sha256") else None
    twin, _ = evaluate.twin_scorer(checkpoint, cache=None)
    served, _ = evaluate.triton_scorer(triton.grpc_url, checkpoint)
    twin_scores = {}
    for name in ("two", "three"):
        sample = Sample(clips[name][0], 1, name, "people")
        [by_twin], [by_triton] = twin(sample), served(sample)
        assert by_twin.prob_fake == pytest.approx(by_triton.prob_fake, abs=0.01), name
        assert (by_twin.frames_with_face, by_twin.frames) == (by_triton.frames_with_face, by_triton.frames), name
        twin_scores[name] = by_twin.prob_fake
    result, _ = answers["two"]
    assert result.deciding_face == 1 and result.track_prob_fake is not None
    assert twin_scores["two"] == pytest.approx(float(result.track_prob_fake[1]), abs=0.01)  # the altered face's
    assert twin_scores["two"] > float(result.track_prob_fake[0]) + 0.01  # not the main face's
