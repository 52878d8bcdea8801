"""Self-blended fakes: untouched outside the mask, changed inside, one blend per clip; augmentations."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.data import astronaut

from training.augment import AugmentConfig, augment_clip, h264_roundtrip
from training.self_blend import BlendParams, blend_mask, draw_params, self_blend, self_blend_clip

# Astronaut face landmarks (eyes, nose, mouth corners) in a 224 px crop around her face.
LANDMARKS = np.array([[92, 96], [134, 96], [113, 120], [96, 146], [130, 146]], np.float32)


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    import cv2

    return cv2.resize(astronaut()[20:220, 120:320], (224, 224), interpolation=cv2.INTER_AREA)


def _strong(seed: int = 0) -> BlendParams:
    p = draw_params(np.random.default_rng(seed))
    return BlendParams(**{**p.__dict__, "blend_ratio": 1.0, "rgb_shift": (25.0, -25.0, 10.0), "elastic_amplitude": 4.0})


def test_identical_outside_the_mask_changed_inside(crop: np.ndarray) -> None:
    for seed in range(5):
        blended, mask = self_blend(crop, LANDMARKS, _strong(seed))
        assert blended.dtype == np.uint8 and blended.shape == crop.shape
        outside = mask == 0
        assert outside.mean() > 0.3  # most of the background is outside
        np.testing.assert_array_equal(blended[outside], crop[outside])
        inside = mask > 0.9
        assert inside.mean() > 0.05
        changed = np.abs(blended.astype(int) - crop.astype(int)).sum(-1) > 0
        assert changed[inside].mean() > 0.9


def test_mask_covers_the_landmarks_and_follows_them() -> None:
    params = _strong(1)
    mask = blend_mask((224, 224), LANDMARKS, params)
    assert mask.min() == 0.0 and mask.max() == pytest.approx(1.0, abs=1e-3)
    for x, y in LANDMARKS.round().astype(int):
        assert mask[y, x] > 0.5
    shifted = blend_mask((224, 224), LANDMARKS + (20, 10), params)
    cy, cx = np.argwhere(mask > 0.5).mean(0)
    sy, sx = np.argwhere(shifted > 0.5).mean(0)
    assert sx - cx == pytest.approx(20, abs=3) and sy - cy == pytest.approx(10, abs=3)


def test_blend_ratio_scales_the_mask() -> None:
    params = _strong(2)
    half = BlendParams(**{**params.__dict__, "blend_ratio": 0.5})
    np.testing.assert_allclose(blend_mask((224, 224), LANDMARKS, half), blend_mask((224, 224), LANDMARKS, params) * 0.5)


def test_clip_uses_one_draw_and_skips_absent_frames(crop: np.ndarray) -> None:
    crops = np.stack([crop, crop, np.zeros_like(crop), crop])
    landmarks = np.stack([LANDMARKS] * 4)
    present = np.array([True, True, False, True])
    blended, masks = self_blend_clip(crops, landmarks, present, _strong(3))
    np.testing.assert_array_equal(blended[0], blended[1])  # same frame, same draw -> same fake
    np.testing.assert_array_equal(blended[0], blended[3])
    np.testing.assert_array_equal(blended[2], 0)
    assert masks[2].max() == 0 and masks[0].max() > 0


def test_draws_are_seeded_and_varied() -> None:
    a = draw_params(np.random.default_rng(7))
    assert a == draw_params(np.random.default_rng(7))
    assert a != draw_params(np.random.default_rng(8))


def test_augment_keeps_shape_absent_frames_black_and_is_seeded(crop: np.ndarray) -> None:
    crops = np.stack([crop, crop, np.zeros_like(crop)])
    present = np.array([True, True, False])
    everything = AugmentConfig(flip=1, downscale=1, jpeg=0, h264=1, blur=1, noise=1, colour=1)
    out = augment_clip(crops, present, np.random.default_rng(0), everything)
    assert out.shape == crops.shape and out.dtype == np.uint8
    assert not np.array_equal(out[0], crop) and np.all(out[2] == 0)
    np.testing.assert_array_equal(out, augment_clip(crops, present, np.random.default_rng(0), everything))
    np.testing.assert_array_equal(augment_clip(crops, present, np.random.default_rng(0), AugmentConfig.off()), crops)


def test_h264_roundtrip_is_lossy_but_close(crop: np.ndarray) -> None:
    frames = np.stack([crop] * 3)
    out = h264_roundtrip(frames, crf=30)
    assert out.shape == frames.shape
    err = np.abs(out.astype(int) - frames.astype(int)).mean()
    assert 0 < err < 12
