"""The face crop fed to the classifier: a square region with margin around a face box, resized.

Shared by Triton's face_crop model, the gateway's Grad-CAM and overlay, and training, so that the crops the
classifier sees are made by one piece of code.
"""

from __future__ import annotations

import cv2
import numpy as np

from deepfake_core import constants as C


def crop_region(box: np.ndarray, margin: float = C.CROP_MARGIN) -> np.ndarray:
    """Square region around a face box: grown by `margin` of its size on each side, centred on the face."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dtype=np.float32)


def crop_face(frame: np.ndarray, box: np.ndarray, size: int = C.CROP_SIZE, margin: float = C.CROP_MARGIN) -> np.ndarray:
    """Cut the square crop region of `box` from an RGB frame and resize it to size x size (uint8).

    Parts of the region outside the frame are black (zero padding), so the face keeps its aspect and position.
    """
    region = np.round(crop_region(box, margin)).astype(np.int64)
    x1, y1, x2, y2 = region
    h, w = frame.shape[:2]
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if sx2 <= sx1 or sy2 <= sy1:
        return np.zeros((size, size, 3), np.uint8)
    patch = frame[sy1:sy2, sx1:sx2]
    if (sx1, sy1, sx2, sy2) != (x1, y1, x2, y2):
        canvas = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
        canvas[sy1 - y1 : sy1 - y1 + patch.shape[0], sx1 - x1 : sx1 - x1 + patch.shape[1]] = patch
        patch = canvas
    interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def crop_faces(frames: np.ndarray, boxes: np.ndarray, present: np.ndarray, size: int = C.CROP_SIZE) -> np.ndarray:
    """Crops [T,size,size,3] uint8 of boxes [T,4] (the frames' pixels) where present [T]; black crops elsewhere."""
    crops = np.zeros((len(frames), size, size, 3), np.uint8)
    for i in np.flatnonzero(present):
        crops[i] = crop_face(frames[i], boxes[i], size)
    return crops
