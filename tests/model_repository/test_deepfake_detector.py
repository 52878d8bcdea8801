"""The deepfake_detector ensemble end to end, through the real local Triton server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from clients.triton_client import DetectorClient, VideoRejectedError
from deepfake_core.classifier import TemporalClassifier
from deepfake_core.ensemble_contract import DetectorResult
from deepfake_core.face_tracks import iou
from deepfake_core.preprocess import normalize_crops
from tests.media import bad_inputs, face_video, faceless_video
from triton_runtime.process import TritonProcess

FPS = 25


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("media")
    face = d / "face.mp4"
    boxes = face_video(face, width=640, height=360, fps=FPS, seconds=2.0)
    faceless = d / "faceless.mp4"
    faceless_video(faceless, width=640, height=360, fps=FPS, seconds=1.0)
    return {"face": face, "boxes": boxes, "faceless": faceless, "dir": d}


@pytest.fixture(scope="module")
def grpc_client(triton: TritonProcess) -> Iterator[DetectorClient]:
    with DetectorClient(triton.grpc_url, "grpc") as client:
        yield client


@pytest.fixture(scope="module")
def http_client(triton: TritonProcess) -> Iterator[DetectorClient]:
    with DetectorClient(triton.http_url, "http") as client:
        yield client


@pytest.fixture(scope="module")
def face_result(grpc_client: DetectorClient, media: dict[str, object]) -> DetectorResult:
    return grpc_client.detect(Path(media["face"]).read_bytes(), with_crops=True, with_maps=True)  # type: ignore[arg-type]


def test_verdict_over_grpc(face_result: DetectorResult) -> None:
    r = face_result
    assert r.face_found
    assert 0.0 <= r.prob_fake <= 1.0
    assert len(r.frame_indices) == 32 and r.frame_scores.shape == (32,)
    assert (r.width, r.height, r.frame_count) == (640, 360, 50)
    assert r.fps == pytest.approx(FPS, rel=1e-3)
    assert np.all(np.diff(r.frame_indices) > 0) and r.frame_indices[0] < 2 and r.frame_indices[-1] > 47
    np.testing.assert_allclose(r.timestamps, r.frame_indices / FPS, atol=1e-3)
    assert r.face_crops is not None and r.face_crops.shape == (32, 224, 224, 3)


def test_http_gives_the_same_verdict(http_client: DetectorClient, media: dict, face_result: DetectorResult) -> None:
    r = http_client.detect(Path(media["face"]).read_bytes())
    assert r.prob_fake == pytest.approx(face_result.prob_fake, abs=1e-6)
    np.testing.assert_allclose(r.face_boxes, face_result.face_boxes, atol=1e-3)
    assert r.face_crops is None and r.feature_maps is None  # only sent when asked for


def test_face_box_matches_known_position_in_every_frame(face_result: DetectorResult, media: dict) -> None:
    truth = np.asarray(media["boxes"], dtype=np.float32)
    assert face_result.has_face.all(), f"face missed in frames {np.flatnonzero(~face_result.has_face)}"
    overlaps = [
        float(iou(truth[f], face_result.face_boxes[i][None])[0]) for i, f in enumerate(face_result.frame_indices)
    ]
    assert min(overlaps) >= 0.5, f"IoU per frame: {np.round(overlaps, 2)}"


def test_triton_probability_equals_pytorch_twin(face_result: DetectorResult, served_twin: TemporalClassifier) -> None:
    model = served_twin
    assert face_result.face_crops is not None
    faces = torch.from_numpy(normalize_crops(face_result.face_crops))[None]
    mask = torch.from_numpy(face_result.has_face.astype(np.float32))[None]
    with torch.no_grad():
        maps = model.feature_maps(faces)
        video_logit, frame_logits = model.head(maps, mask)
    assert float(torch.sigmoid(video_logit)[0]) == pytest.approx(face_result.prob_fake, abs=1e-3)
    np.testing.assert_allclose(torch.sigmoid(frame_logits)[0].numpy(), face_result.frame_scores, atol=1e-3)
    # the served feature maps (Grad-CAM's activations) are the twin's, to float16 precision
    assert face_result.feature_maps is not None and face_result.feature_maps.dtype == np.float16
    np.testing.assert_allclose(face_result.feature_maps.astype(np.float32), maps[0].numpy(), rtol=2e-3, atol=2e-3)


def test_faceless_video_is_not_an_error(grpc_client: DetectorClient, media: dict) -> None:
    r = grpc_client.detect(Path(media["faceless"]).read_bytes())
    assert not r.face_found and not r.has_face.any()
    assert r.prob_fake == pytest.approx(0.5)
    assert r.predicted_class() == "NO_FACE"


def test_num_frames_option(grpc_client: DetectorClient, media: dict) -> None:
    r = grpc_client.detect(Path(media["face"]).read_bytes(), num_frames=8)
    assert len(r.frame_indices) == 8 and r.face_found
    with pytest.raises(VideoRejectedError, match="NUM_FRAMES"):
        grpc_client.detect(Path(media["face"]).read_bytes(), num_frames=0)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_bad_inputs_are_rejected_and_the_server_keeps_serving(
    triton: TritonProcess, media: dict, protocol: str, tmp_path: Path
) -> None:
    url = triton.grpc_url if protocol == "grpc" else triton.http_url
    good = Path(media["face"]).read_bytes()
    with DetectorClient(url, protocol) as client:  # type: ignore[arg-type]
        for name, data in bad_inputs(tmp_path).items():
            with pytest.raises(VideoRejectedError) as info:
                client.detect(data)
            message = str(info.value).lower()
            assert any(w in message for w in ("video", "frame", "empty", "decode")), f"{name}: {message}"
            assert client.detect(good, num_frames=4).face_found, f"server broken after {name}"


def test_sixteen_concurrent_requests(triton: TritonProcess, media: dict) -> None:
    data = Path(media["face"]).read_bytes()

    def one(_: int) -> float:
        with DetectorClient(triton.grpc_url, "grpc") as client:
            return client.detect(data, num_frames=8).prob_fake

    with ThreadPoolExecutor(16) as pool:
        probs = list(pool.map(one, range(16)))
    assert len(probs) == 16
    assert max(probs) - min(probs) < 1e-5  # batched or not, the same video gives the same answer


@pytest.mark.parametrize("suffix", [".mov", ".mkv", ".webm", ".avi"])
def test_other_containers_and_codecs(grpc_client: DetectorClient, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"face{suffix}"
    boxes = face_video(path, width=480, height=270, fps=FPS, seconds=1.0)
    r = grpc_client.detect(path.read_bytes(), num_frames=6)
    assert r.face_found and r.frame_count == len(boxes)
    truth = np.asarray(boxes, dtype=np.float32)
    found = np.flatnonzero(r.has_face)
    assert len(found) >= 5
    assert min(float(iou(truth[r.frame_indices[i]], r.face_boxes[i][None])[0]) for i in found) >= 0.5
