"""deepfake_core.preprocess: the classifier's normalisation and its inverse (the ensemble's FACE_CROPS)."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_core.preprocess import denormalize_crops, normalize_crops


def test_denormalize_recovers_every_grey_level_of_every_channel() -> None:
    levels = np.arange(256, dtype=np.uint8)
    crops = np.stack(np.broadcast_arrays(levels[:, None], levels[None, :], levels[::-1, None]), axis=-1)[None]
    assert crops.shape == (1, 256, 256, 3)
    back = denormalize_crops(normalize_crops(crops))
    assert back.dtype == np.uint8 and back.shape == crops.shape
    np.testing.assert_array_equal(back, crops)


def test_denormalize_refuses_channels_last() -> None:
    with pytest.raises(ValueError, match="3, H, W"):
        denormalize_crops(np.zeros((2, 224, 224, 3), np.float32))
