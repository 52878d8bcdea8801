"""Test videos with several people: copies of the astronaut's head (``tests.media``) side by side, each at its own
size and place, one of them optionally self-blended with the project's own SBI code (``training.self_blend``), and
people who enter and leave mid-video. Every person's ground-truth face box per frame comes back with the video.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from deepfake_core.sample_clip import ASTRONAUT_FACE_BOX, ASTRONAUT_HEAD_PATCH, Box, write_video
from training.self_blend import BlendParams, self_blend

# MTCNN's five landmarks of the astronaut's face in skimage.data.astronaut() (the project's cascade finds them).
ASTRONAUT_LANDMARKS = np.array(
    [[204.1, 101.6], [246.9, 103.2], [224.5, 128.8], [202.7, 141.4], [245.3, 142.2]], np.float32
)
# One strong, fixed self-blend (colour shift, blur, a small shift and scale through an elliptic mask).
BLEND = BlendParams(
    hull=False,
    width_scale=1.2,
    height_scale=1.8,
    centre_shift=-0.15,
    elastic_amplitude=4.0,
    elastic_seed=1,
    blur_sigma=4.0,
    blend_ratio=0.5,
    rgb_shift=(25.0, -20.0, 10.0),
    hue_shift=5.0,
    sat_scale=1.1,
    brightness=10.0,
    contrast=1.1,
    sharpness=-1.5,
    scale=1.03,
    shift=(0.01, 0.01),
)


@dataclass(frozen=True)
class Person:
    """One head in the frame: its height as a fraction of the frame's, its centre (fractions of the frame), whether
    its face is self-blended, and the part of the clip (0..1) it is in."""

    height: float
    cx: float
    cy: float = 0.5
    altered: bool = False
    enters: float = 0.0
    leaves: float = 1.0


@lru_cache(maxsize=2)
def head_patch(altered: bool) -> np.ndarray:
    """The astronaut's head patch, self-blended with ``BLEND`` when ``altered``."""
    from skimage.data import astronaut

    image = astronaut()
    if altered:
        image, _ = self_blend(image, ASTRONAUT_LANDMARKS, BLEND)
    x1, y1, x2, y2 = ASTRONAUT_HEAD_PATCH
    return np.ascontiguousarray(image[y1:y2, x1:x2])


def _background(width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([90 + 60 * xx / width, 110 + 40 * yy / height, 140 - 50 * xx / width * yy / height], axis=-1)
    return np.clip(base, 0, 255).astype(np.uint8)


def people_frames(
    people: Sequence[Person], width: int = 640, height: int = 360, fps: float = 25, seconds: float = 2.0
) -> Iterator[tuple[np.ndarray, list[Box | None]]]:
    """Frames (RGB uint8) and, per person, the face box in that frame (None while the person is out of it)."""
    count = max(1, round(seconds * fps))
    background = _background(width, height)
    ph, pw = head_patch(False).shape[:2]
    px1, py1 = ASTRONAUT_HEAD_PATCH[:2]
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE_BOX
    for i in range(count):
        u = i / max(1, count - 1)
        frame = background.copy()
        boxes: list[Box | None] = []
        for k, person in enumerate(people):
            if not person.enters <= u <= person.leaves:
                boxes.append(None)
                continue
            new_h = round(person.height * height)
            new_w = round(new_h * pw / ph)
            sx, sy = new_w / pw, new_h / ph
            drift = 0.02 * width * math.sin(2 * math.pi * u + k)  # everyone moves a little
            x0 = int(np.clip(round(person.cx * width + drift - new_w / 2), 0, width - new_w))
            y0 = int(np.clip(round(person.cy * height - new_h / 2), 0, height - new_h))
            patch = cv2.resize(head_patch(person.altered), (new_w, new_h), interpolation=cv2.INTER_AREA)
            frame[y0 : y0 + new_h, x0 : x0 + new_w] = patch
            boxes.append((x0 + (fx1 - px1) * sx, y0 + (fy1 - py1) * sy, x0 + (fx2 - px1) * sx, y0 + (fy2 - py1) * sy))
        yield frame, boxes


def people_video(
    path: str | os.PathLike[str],
    people: Sequence[Person],
    *,
    width: int = 640,
    height: int = 360,
    fps: float = 25,
    seconds: float = 2.0,
) -> list[list[Box | None]]:
    """Write a video of ``people``; returns per person the face box of every frame (None where absent)."""
    per_frame: list[list[Box | None]] = []

    def frames() -> Iterator[np.ndarray]:
        for frame, boxes in people_frames(people, width, height, fps, seconds):
            per_frame.append(boxes)
            yield frame

    write_video(path, frames(), fps)
    return [list(column) for column in zip(*per_frame, strict=True)]


# The clips of the issue (14): the altered face is the SMALLER one; three and five people; one who comes and goes.
TWO_PEOPLE = (Person(height=0.72, cx=0.27), Person(height=0.52, cx=0.75, altered=True))
THREE_PEOPLE = (Person(0.50, 0.18), Person(0.48, 0.5), Person(0.46, 0.82))
FIVE_PEOPLE = (Person(0.40, 0.1), Person(0.38, 0.3), Person(0.36, 0.5), Person(0.34, 0.7), Person(0.32, 0.9))
VISITOR = (Person(height=0.7, cx=0.27), Person(height=0.5, cx=0.75, enters=0.3, leaves=0.7))
