"""Test media generated in code: face videos with ground-truth boxes, faceless videos, bad inputs.

Nothing is downloaded: the face videos come from ``deepfake_core.sample_clip`` (the astronaut portrait bundled with
scikit-image, encoded with PyAV), independently of ``deepfake_core.decode`` so that the reader is tested against a
separate writer; this module adds faceless videos and the bad inputs.

Containers and default codecs (chosen from the file suffix): ``.mp4``/``.mov``/``.mkv`` -> libx264 (yuv420p,
preset ultrafast), ``.webm`` -> libvpx-vp9 (libvpx VP8 when the bundled FFmpeg lacks VP9), ``.avi`` -> mpeg4.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from deepfake_core.sample_clip import (
    ASTRONAUT_FACE_BOX,
    ASTRONAUT_HEAD_PATCH,
    Box,
    default_codec,
    face_frames,
    face_video,
    hd_clip,
    write_video,
)

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
