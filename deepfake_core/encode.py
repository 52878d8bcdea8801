"""H.264 writing with PyAV (numpy + av only): the gateway's overlay video.

``H264Writer``: H.264 yuv420p mp4 with ``movflags=+faststart`` (plays in browsers), via libx264, from RGB frames or
packed I420 frames (the layout of ``deepfake_core.decode.i420_planes``, what the decoder gives with
``pixel_format="yuv420p"``).
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

__all__ = ["H264Writer"]


class H264Writer:
    """Writes RGB frames to an H.264 (libx264, yuv420p) mp4 with ``movflags=+faststart`` (browsers play it).

    ``with H264Writer(path, width, height, fps, preset="ultrafast", crf=23) as w: w.write(rgb)`` (the caller
    chooses the encoding: the gateway's comes from its Settings). yuv420p needs even sizes: an odd width or height
    is PADDED by one pixel (the last column/row repeated), so no pixel of the input is lost and box
    coordinates stay valid; ``w.width``/``w.height`` are the encoded size. The rate is ``fps`` as an exact
    fraction (29.97 -> 30000/1001); pass a ``Fraction`` (e.g. a source stream's ``average_rate``) to keep it
    exact. Every written frame is encoded (constant rate, no drops). On an exception inside the ``with``
    block the partial file is deleted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: float | Fraction,
        *,
        preset: str,
        crf: int,
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"invalid frame size {width}x{height}")
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.in_width, self.in_height = int(width), int(height)
        self.width, self.height = self.in_width + self.in_width % 2, self.in_height + self.in_height % 2
        self.rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001 * 1000)
        self.frames_written = 0
        self._container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            self._stream = self._container.add_stream(
                "libx264", rate=self.rate, options={"preset": preset, "crf": str(crf)}
            )
            self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, "yuv420p"
            self._time_base = Fraction(1) / self.rate
        except Exception:
            self._container.close()
            self.path.unlink(missing_ok=True)
            raise
        self._closed = False

    def write(self, rgb_frame: np.ndarray) -> None:
        """Encode one RGB uint8 frame of shape (height, width, 3) (the size given to the constructor)."""
        if self._closed:
            raise RuntimeError("H264Writer is closed")
        if rgb_frame.dtype != np.uint8 or rgb_frame.shape != (self.in_height, self.in_width, 3):
            raise ValueError(
                f"expected uint8 RGB frames of shape {(self.in_height, self.in_width, 3)}, "
                f"got {rgb_frame.dtype} {rgb_frame.shape}"
            )
        if (self.width, self.height) != (self.in_width, self.in_height):
            rgb_frame = np.pad(
                rgb_frame,
                ((0, self.height - self.in_height), (0, self.width - self.in_width), (0, 0)),
                mode="edge",
            )
        self._encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb_frame), format="rgb24"))

    def _encode(self, frame: Any) -> None:
        frame.pts = self.frames_written
        frame.time_base = self._time_base
        self._container.mux(self._stream.encode(frame))
        self.frames_written += 1

    def write_i420(self, yuv: np.ndarray) -> None:
        """Encode one packed I420 frame ``(height * 3 / 2, width)`` uint8 (even sizes only): no colour conversion."""
        if self._closed:
            raise RuntimeError("H264Writer is closed")
        if (
            yuv.dtype != np.uint8
            or yuv.shape != (self.height * 3 // 2, self.width)
            or (self.in_width, self.in_height)
            != (
                self.width,
                self.height,
            )
        ):
            raise ValueError(
                f"expected uint8 I420 frames of shape {(self.height * 3 // 2, self.width)}, got {yuv.shape}"
            )
        self._encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p"))

    def close(self) -> None:
        """Flush the encoder and finish the file (the faststart pass moves the index to the front)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()

    def _abort(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):  # already failing: the original exception is the one to see
            self._container.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._abort()
        else:
            self.close()
