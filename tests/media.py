"""Test media generated in code: face videos with ground-truth boxes, faceless videos, bad inputs.

Nothing is downloaded: the face is the astronaut portrait bundled with scikit-image. Videos are encoded with
PyAV (its wheel bundles FFmpeg with libx264, libvpx and the mpeg4 encoder), independently of
``deepfake_core.video`` so that the reader is tested against a separate writer.

Containers and default codecs (chosen from the file suffix): ``.mp4``/``.mov``/``.mkv`` -> libx264 (yuv420p,
preset ultrafast), ``.webm`` -> libvpx-vp9 (libvpx VP8 when the bundled FFmpeg lacks VP9), ``.avi`` -> mpeg4.
"""

from __future__ import annotations

import io
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

__all__ = [
    "ASTRONAUT_FACE_BOX",
    "ASTRONAUT_HEAD_PATCH",
    "Box",
    "bad_inputs",
    "default_codec",
    "face_frames",
    "face_video",
    "faceless_video",
    "hd_clip",
    "truncated_faststart",
    "write_video",
]

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


def faceless_frames(width: int = 640, height: int = 360, fps: float = 25, seconds: float = 1.0) -> Iterator[np.ndarray]:
    """Moving gradients and shapes, no face."""
    count = max(1, round(seconds * fps))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        t = i / fps
        r = 128 + 100 * np.sin(xx / 37.0 + 2.0 * t)
        g = 128 + 100 * np.sin(yy / 23.0 - 1.3 * t)
        b = 128 + 80 * np.sin((xx + yy) / 51.0 + 0.7 * t)
        frame = np.ascontiguousarray(np.stack([r, g, b], axis=-1).astype(np.uint8))
        cx = int(width * (0.5 + 0.35 * math.sin(1.7 * t)))
        cy = int(height * (0.5 + 0.3 * math.cos(1.1 * t)))
        cv2.circle(frame, (cx, cy), max(4, height // 8), (240, 240, 40), -1)
        cv2.rectangle(
            frame,
            (width // 5, int(height * (0.2 + 0.1 * math.sin(t)))),
            (width // 5 + width // 6, int(height * (0.5 + 0.1 * math.sin(t)))),
            (30, 60, 200),
            -1,
        )
        yield frame


def faceless_video(
    path: str | os.PathLike[str],
    *,
    width: int = 640,
    height: int = 360,
    fps: float = 25,
    seconds: float = 1.0,
    codec: str | None = None,
) -> int:
    """Write a video of moving shapes and gradients without any face; returns its frame count."""
    return write_video(path, faceless_frames(width, height, fps, seconds), fps, codec)


def hd_clip(
    path: str | os.PathLike[str], seconds: float = 10, width: int = 1280, height: int = 720, fps: float = 30
) -> list[Box]:
    """The benchmark clip: a 720p face video (10 s at 30 fps by default); returns the face boxes."""
    return face_video(path, width=width, height=height, fps=fps, seconds=seconds)


def _sine_m4a(seconds: float = 1.0, rate: int = 44100) -> bytes:
    """An audio-only MP4 (.m4a): an AAC-coded 440 Hz sine."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        n = 1024
        total = int(seconds * rate)
        for start in range(0, total, n):
            t = (np.arange(start, min(total, start + n)) / rate).astype(np.float32)
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def _zero_frame_avi(width: int = 320, height: int = 240) -> bytes:
    """An AVI file with an MPEG-4 video stream in its header and no packets at all.

    (Matroska and MP4 can't make this case: FFmpeg fails to open the first and drops the empty track of the
    second.)
    """
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        container.start_encoding()  # writes the header (the stream's format), then no packet at all
    return buf.getvalue()


def _png(width: int = 320, height: int = 240) -> bytes:
    frame = next(face_frames(width, height, 25, 0.04))[0]
    ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def truncated_faststart(tmpdir: str | os.PathLike[str], keep: float = 0.3) -> bytes:
    """The first ``keep`` of a faststart mp4 (index complete, media cut): the first frames still decode."""
    path = Path(tmpdir) / "truncated_faststart_source.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    face_video(path, width=320, height=180, fps=25, seconds=2.0, faststart=True)
    data = path.read_bytes()
    return data[: int(len(data) * keep)]


def bad_inputs(tmpdir: str | os.PathLike[str]) -> dict[str, bytes]:
    """Inputs every video reader must reject with a clear error (all of them, no partial results).

    - ``empty``: no bytes; ``random``: 64 KB of seeded random bytes; ``text``: a plain text file;
    - ``png``: a still image (FFmpeg opens it as a one-frame stream: it must still be refused);
    - ``truncated``: the first 30% of an mp4 whose index (moov) is at the end, so the index is missing;
      (``truncated_faststart`` makes the other case, where the first frames still decode);
    - ``truncated_head``: a faststart mp4 with its first 2 KB cut off;
    - ``audio_only``: an AAC-coded sine in an MP4 (.m4a);
    - ``zero_frames``: an AVI file with an MPEG-4 video stream and no packets.
    """
    tmp = Path(tmpdir)
    tmp.mkdir(parents=True, exist_ok=True)
    late_index = tmp / "late_index.mp4"
    face_video(late_index, width=320, height=180, fps=25, seconds=1.0, faststart=False)
    faststart = tmp / "faststart.mp4"
    face_video(faststart, width=320, height=180, fps=25, seconds=1.0, faststart=True)
    late_bytes = late_index.read_bytes()
    text = ("This is not a video.\nIt is a plain text file that a user uploaded by mistake.\n" * 40).encode()
    return {
        "empty": b"",
        "random": np.random.default_rng(20240601).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes(),
        "text": text,
        "png": _png(),
        "truncated": late_bytes[: int(len(late_bytes) * 0.3)],
        "truncated_head": faststart.read_bytes()[2048:],
        "audio_only": _sine_m4a(),
        "zero_frames": _zero_frame_avi(),
    }
