"""Face crops: the square region with margin, padding outside the frame, sizes (deepfake_core.crop)."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_core import constants as C
from deepfake_core.crop import crop_face, crop_faces, crop_region


def test_crop_region_is_a_square_with_margin_around_the_face() -> None:
    region = crop_region(np.array([100, 100, 160, 200], np.float32))
    side = 100 * (1 + 2 * C.CROP_MARGIN)
    np.testing.assert_allclose(region, [130 - side / 2, 150 - side / 2, 130 + side / 2, 150 + side / 2], atol=1e-4)


def test_crop_face_pads_outside_the_frame_with_black() -> None:
    frame = np.full((100, 200, 3), 200, np.uint8)
    crop = crop_face(frame, np.array([0, 0, 40, 40], np.float32), size=64)
    assert crop.shape == (64, 64, 3)
    assert crop[0, 0].tolist() == [0, 0, 0]  # top-left of the region lies outside the frame
    assert crop[40, 40].tolist() == [200, 200, 200]


def test_crop_face_keeps_the_face_centred() -> None:
    frame = np.zeros((400, 400, 3), np.uint8)
    frame[150:250, 150:250] = 255  # the "face"
    crop = crop_face(frame, np.array([150, 150, 250, 250], np.float32), size=C.CROP_SIZE)
    inner = crop[C.CROP_SIZE // 5 + 2 : -C.CROP_SIZE // 5 - 2, C.CROP_SIZE // 5 + 2 : -C.CROP_SIZE // 5 - 2]
    assert inner.min() == 255 and crop[:10].max() == 0


def test_crop_faces_masks_absent_frames() -> None:
    frames = np.full((2, 120, 160, 3), 90, np.uint8)
    boxes = np.array([[40, 30, 100, 90], [0, 0, 0, 0]], np.float32)
    crops = crop_faces(frames, boxes, np.array([True, False]))
    assert crops.shape == (2, C.CROP_SIZE, C.CROP_SIZE, 3)
    assert crops[0].max() == 90 and crops[1].max() == 0


@pytest.mark.parametrize("size", [24, 48])
def test_crop_face_sizes(size: int) -> None:
    assert crop_face(np.zeros((50, 50, 3), np.uint8), np.array([10, 10, 30, 30], np.float32), size).shape == (
        size,
        size,
        3,
    )
