"""Temporal classifier: shapes, mask semantics, determinism, Grad-CAM layer; numpy preprocessing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from deepfake_core.classifier import (
    DEFAULT_ARCH,
    ExportWrapper,
    TemporalClassifier,
    build_classifier,
    untrained_classifier,
)
from deepfake_core.constants import CROP_SIZE, MEAN, STD
from deepfake_core.preprocess import normalize_crops

# A narrow, shallow variant and small frames keep the semantic tests fast; the network is fully convolutional.
SMALL = {"width_mult": 0.25, "depth_mult": 0.34}
SIZE = 64


@pytest.fixture(scope="module")
def small() -> TemporalClassifier:
    return untrained_classifier(SMALL)


@pytest.fixture(scope="module")
def full() -> TemporalClassifier:
    return untrained_classifier()


def _faces(batch: int, frames: int, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _run(model: torch.nn.Module, faces: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return tuple(model(faces, mask))


def test_full_model_shapes_and_gradcam_layer(full: TemporalClassifier) -> None:
    faces = _faces(2, 3, CROP_SIZE)
    mask = torch.ones(2, 3)
    video_logit, frame_logits = _run(full, faces, mask)
    assert video_logit.shape == (2,) and frame_logits.shape == (2, 3)
    assert full.frame_encoder.out_features == 1280
    maps: list[torch.Tensor] = []
    handle = full.gradcam_target_layer().register_forward_hook(lambda m, i, o: maps.append(o))
    try:
        with torch.no_grad():
            full.forward_frames(faces[0])
    finally:
        handle.remove()
    assert maps[0].shape == (3, 1280, CROP_SIZE // 32, CROP_SIZE // 32)
    assert full.gradcam_target_layer() is full.frame_encoder.features_out


def test_export_wrapper_outputs(small: TemporalClassifier) -> None:
    faces, mask = _faces(2, 4), torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    prob, logit, scores, maps = _run(ExportWrapper(small).eval(), faces, mask)
    video_logit, frame_logits = _run(small, faces, mask)
    assert prob.shape == (2, 1) and logit.shape == (2, 1) and scores.shape == (2, 4)
    assert maps.dtype == torch.float16 and maps.shape[:3] == (2, 4, small.frame_encoder.out_features)
    with torch.no_grad():
        torch.testing.assert_close(small.head(maps.float(), mask).video_logit, video_logit, atol=0.05, rtol=0.05)
    torch.testing.assert_close(logit[:, 0], video_logit)
    torch.testing.assert_close(prob[:, 0], torch.sigmoid(video_logit))
    torch.testing.assert_close(scores, torch.sigmoid(frame_logits) * mask)
    assert float(prob[1, 0]) == 0.5 and torch.all(scores[1] == 0) and float(scores[0, 1]) == 0.0


def test_masked_frames_do_not_influence_the_video(small: TemporalClassifier) -> None:
    faces = _faces(1, 6)
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0, 1.0]])
    video, frames = _run(small, faces, mask)
    changed = faces.clone()
    changed[0, 2] = 5.0 * torch.randn(3, SIZE, SIZE)
    changed[0, 4] = float("nan")  # even garbage in a masked frame goes nowhere
    video2, frames2 = _run(small, changed, mask)
    assert torch.equal(video, video2)
    assert torch.equal(frames, frames2)
    assert frames[0, 2] == 0 and frames[0, 4] == 0


def test_present_frames_do_influence_the_video(small: TemporalClassifier) -> None:
    faces, mask = _faces(1, 6), torch.ones(1, 6)
    video, frames = _run(small, faces, mask)
    changed = faces.clone()
    changed[0, 2] = torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    video2, frames2 = _run(small, changed, mask)
    assert abs(float(video - video2)) > 1e-4
    assert abs(float(frames[0, 2] - frames2[0, 2])) > 1e-4
    torch.testing.assert_close(frames[0, [0, 1, 3, 4, 5]], frames2[0, [0, 1, 3, 4, 5]])  # frame head is per frame


def test_all_zero_mask_gives_exactly_zero_logit(small: TemporalClassifier) -> None:
    faces = _faces(3, 5)
    mask = torch.tensor([[1.0, 1, 1, 1, 1], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]])
    video, frames = _run(small, faces, mask)
    assert video[1].item() == 0.0 and torch.all(frames[1] == 0)
    assert video[0].item() != 0.0 and video[2].item() != 0.0
    # A sample's result does not depend on the others in its batch.
    alone = _run(small, faces[2:], mask[2:])
    torch.testing.assert_close(alone[0], video[2:], atol=1e-5, rtol=1e-5)


def test_variable_number_of_frames(small: TemporalClassifier) -> None:
    for frames in (1, 2, 9):
        video, frame_logits = _run(small, _faces(2, frames), torch.ones(2, frames))
        assert video.shape == (2,) and frame_logits.shape == (2, frames)
        assert torch.isfinite(video).all() and torch.isfinite(frame_logits).all()


def test_untrained_weights_are_deterministic_and_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = untrained_classifier(SMALL)
    assert torch.equal(torch.rand(3), expected_next)
    b = untrained_classifier(SMALL)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not a.training
    different = build_classifier(SMALL)
    assert not torch.equal(different.frame_head.weight, a.frame_head.weight)


def test_untrained_model_is_input_sensitive(full: TemporalClassifier) -> None:
    """BatchNorm calibration keeps the untrained net from collapsing to one constant output."""
    with torch.no_grad():
        logits = full.forward_frames(_faces(1, 4, CROP_SIZE)[0])
    assert float(logits.std()) > 1e-2
    assert torch.isfinite(logits).all()


def test_arch_config() -> None:
    assert DEFAULT_ARCH["width_mult"] == 1.0
    half = build_classifier({"width_mult": 0.5, "depth_mult": 0.34})
    assert half.frame_encoder.out_features == 640
    assert half.arch["width_mult"] == 0.5 and half.arch["temporal_dim"] == DEFAULT_ARCH["temporal_dim"]
    with pytest.raises(ValueError, match="unknown classifier arch keys"):
        build_classifier({"widht_mult": 1.0})
    with pytest.raises(ValueError, match="unsupported backbone"):
        build_classifier({"backbone": "resnet50"})


def test_training_step_runs() -> None:
    model = build_classifier(SMALL).train()
    faces, mask = _faces(2, 3), torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    video, frames = model(faces, mask)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(video, torch.tensor([0.0, 1.0])) + frames.sum()
    loss.backward()
    for param in model.gradcam_target_layer().parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


def test_normalize_crops_matches_the_formula() -> None:
    crops = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    out = normalize_crops(crops)
    assert out.dtype == np.float32 and out.shape == (4, 3, 32, 32) and out.flags.c_contiguous
    expected = (crops.astype(np.float64) / 255.0 - np.asarray(MEAN)) / np.asarray(STD)
    np.testing.assert_allclose(out, expected.transpose(0, 3, 1, 2), atol=1e-5)
    assert normalize_crops(crops[None]).shape == (1, 4, 3, 32, 32)


def test_normalize_crops_rejects_wrong_input() -> None:
    with pytest.raises(ValueError):
        normalize_crops(np.zeros((2, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        normalize_crops(np.zeros((2, 3, 8, 8), dtype=np.uint8))


def test_preprocess_module_does_not_import_torch() -> None:
    code = "import sys, deepfake_core.preprocess; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
