"""A sample face clip made in code, for the demo and the benchmarks (and the tests' media, which reuse it).

The face is the astronaut portrait bundled with scikit-image (public domain; imported only when a clip is made,
so a gateway image without scikit-image never needs it), moving and scaling smoothly over a soft background.
Videos are encoded with PyAV; the container comes from the suffix: ``.mp4``/``.mov``/``.mkv`` -> libx264 (yuv420p,
preset ultrafast), ``.webm`` -> libvpx-vp9 (libvpx VP8 when the bundled FFmpeg lacks VP9), ``.avi`` -> mpeg4.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np

Box = tuple[float, float, float, float]

# In skimage.data.astronaut() (512x512): the face as MTCNN boxes it (x1, y1, x2, y2; checked by eye on a drawn
# frame, and it is what the project's MTCNN finds), and the head patch that is cut out and moved around.
ASTRONAUT_FACE_BOX: Box = (180.0, 61.0, 268.0, 174.0)
ASTRONAUT_HEAD_PATCH: tuple[int, int, int, int] = (140, 20, 310, 215)

# The patch's height as a fraction of the frame's height: it grows from MIN to MAX and back over the clip
# (face height at 640x360: about 0.58 * 113 / 195 * 360 = 121 px at the smallest, 162 px at the largest).
_PATCH_MIN_FRACTION = 0.58
_PATCH_MAX_FRACTION = 0.78


def default_codec(path: str | os.PathLike[str]) -> str:
    """The encoder used for a container suffix (see the module docstring)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".mp4", ".mov", ".mkv", ".m4v"):
        return "libx264"
    if suffix == ".webm":
        return "libvpx-vp9" if "libvpx-vp9" in av.codecs_available else "libvpx"
    if suffix == ".avi":
        return "mpeg4"
    raise ValueError(f"no default video codec for {suffix!r} (use .mp4, .mov, .mkv, .webm or .avi)")


def _codec_options(codec: str) -> dict[str, str]:
    if codec == "libx264":
        return {"preset": "ultrafast", "crf": "20"}
    if codec == "libvpx-vp9":
        return {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0", "row-mt": "1"}
    if codec == "libvpx":
        return {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "2M"}
    if codec == "mpeg4":
        return {"qscale": "4"}
    return {}


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: float,
    codec: str | None = None,
    *,
    faststart: bool = True,
    rotation: int = 0,
) -> int:
    """Encode RGB uint8 frames ``(H, W, 3)`` (even sizes) to ``path``; returns the number of frames written.

    The container comes from the suffix, the codec from ``default_codec`` unless given. ``faststart`` puts the
    mp4/mov index before the media data. ``rotation`` (degrees counter-clockwise) stores a display matrix, as
    phones do for portrait videos.
    """
    path = Path(path)
    codec = codec or default_codec(path)
    rate = Fraction(fps).limit_denominator(1001 * 1000)
    container_options = {"movflags": "+faststart"} if faststart and path.suffix.lower() in (".mp4", ".mov") else {}
    count = 0
    with av.open(str(path), mode="w", options=container_options) as container:
        stream: av.video.stream.VideoStream | None = None
        for rgb in frames:
            if stream is None:
                height, width = rgb.shape[:2]
                stream = cast(
                    av.video.stream.VideoStream, container.add_stream(codec, rate=rate, options=_codec_options(codec))
                )
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                if rotation:
                    stream.set_display_rotation(rotation)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = count
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
            count += 1
        if stream is None:
            raise ValueError("write_video got no frames")
        container.mux(stream.encode(None))
    return count


@lru_cache(maxsize=1)
def _head_patch() -> np.ndarray:
    from skimage.data import astronaut

    x1, y1, x2, y2 = ASTRONAUT_HEAD_PATCH
    return np.ascontiguousarray(astronaut()[y1:y2, x1:x2])


@lru_cache(maxsize=8)
def _background(width: int, height: int) -> np.ndarray:
    """A soft textured background (gradients and smooth noise), the same in every frame."""
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([90 + 60 * xx / width, 110 + 40 * yy / height, 140 - 50 * xx / width * yy / height], axis=-1)
    noise = cv2.resize(
        rng.normal(0, 12, (max(2, height // 24), max(2, width // 24), 3)).astype(np.float32),
        (width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def face_frames(
    width: int = 640, height: int = 360, fps: float = 25, seconds: float = 2.0
) -> Iterator[tuple[np.ndarray, Box]]:
    """Frames (RGB uint8) of the astronaut's head moving and scaling smoothly, with the face box of each."""
    count = max(1, round(seconds * fps))
    patch = _head_patch()
    ph, pw = patch.shape[:2]
    px1, py1 = ASTRONAUT_HEAD_PATCH[:2]
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE_BOX
    background = _background(width, height)
    for i in range(count):
        u = i / max(1, count - 1)  # 0..1 over the clip
        fraction = _PATCH_MIN_FRACTION + (_PATCH_MAX_FRACTION - _PATCH_MIN_FRACTION) * 0.5 * (
            1 - math.cos(2 * math.pi * u)
        )
        new_h = max(8, round(fraction * min(height, width * ph / pw)))  # portrait frames too
        new_w = max(8, round(new_h * pw / ph))
        sx, sy = new_w / pw, new_h / ph
        # The centre follows a Lissajous path that keeps the whole patch inside the frame.
        cx = width / 2 + (width - new_w) / 2 * 0.85 * math.sin(2 * math.pi * u)
        cy = height / 2 + (height - new_h) / 2 * 0.8 * math.sin(4 * math.pi * u + 0.5)
        x0 = int(np.clip(round(cx - new_w / 2), 0, width - new_w))
        y0 = int(np.clip(round(cy - new_h / 2), 0, height - new_h))
        frame = background.copy()
        frame[y0 : y0 + new_h, x0 : x0 + new_w] = cv2.resize(patch, (new_w, new_h), interpolation=cv2.INTER_AREA)
        box = (
            x0 + (fx1 - px1) * sx,
            y0 + (fy1 - py1) * sy,
            x0 + (fx2 - px1) * sx,
            y0 + (fy2 - py1) * sy,
        )
        yield frame, box


def face_video(
    path: str | os.PathLike[str],
    *,
    width: int = 640,
    height: int = 360,
    fps: float = 25,
    seconds: float = 2.0,
    codec: str | None = None,
    faststart: bool = True,
    rotation: int = 0,
) -> list[Box]:
    """Write a face video (see ``face_frames``); returns the ground-truth face box (x1, y1, x2, y2) per frame.

    Boxes are in the pixels of the stored frames (before any display ``rotation``).
    """
    boxes: list[Box] = []

    def frames() -> Iterator[np.ndarray]:
        for frame, box in face_frames(width, height, fps, seconds):
            boxes.append(box)
            yield frame

    write_video(path, frames(), fps, codec, faststart=faststart, rotation=rotation)
    return boxes


def hd_clip(
    path: str | os.PathLike[str], seconds: float = 10, width: int = 1280, height: int = 720, fps: float = 30
) -> list[Box]:
    """The benchmark clip: a 720p face video (10 s at 30 fps by default); returns the face boxes."""
    return face_video(path, width=width, height=height, fps=fps, seconds=seconds)
