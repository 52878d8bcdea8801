"""Decode the overlay's frames while Triton works: a bounded read-ahead of ``iter_video_frames``.

The overlay needs Triton's boxes and Grad-CAM maps before its first frame can be drawn, so rendering waits for
inference; decoding does not have to. ``FramePrefetch`` starts the render's decoder in a thread as soon as the
video is probed and keeps its frames (already at the overlay's size and pixel format) until ``max_bytes`` are
held; the render then takes the held frames and continues the same decoder from where the read-ahead stopped.
Nothing is decoded twice, and memory stays bounded for any video length.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_core.decode import iter_video_frames

__all__ = ["FramePrefetch"]

log = logging.getLogger(__name__)

Frame = tuple[int, float, np.ndarray]


class FramePrefetch:
    """Read ahead up to ``max_bytes`` of decoded frames in a background thread; ``frames()`` replays them and
    continues the decoder. Use as a context manager (or call ``close``) so an unused read-ahead stops and frees
    its decoder."""

    def __init__(self, source: str | Path, max_side: int, pixel_format: str, max_bytes: int, threads: int = 1):
        frames = iter_video_frames(source, max_side, pixel_format=pixel_format, threads=threads)
        assert isinstance(frames, Generator)  # closed by close(), which frees the decoder
        self._frames = frames
        self._held: deque[Frame] = deque()
        self._max_bytes = max_bytes
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._taken = False
        self.held_bytes = 0
        self._thread = threading.Thread(target=self._read_ahead, name="overlay-prefetch", daemon=True)
        self._thread.start()

    def _read_ahead(self) -> None:
        try:
            while not self._stop.is_set() and self.held_bytes < self._max_bytes:
                frame = next(self._frames, None)
                if frame is None:  # the whole video is held; the render's ``yield from`` below ends at once
                    return
                self._held.append(frame)
                self.held_bytes += frame[2].nbytes
        except BaseException as exc:  # noqa: BLE001 - raised again where the render reaches this frame
            self._error = exc

    @property
    def frames_held(self) -> int:
        return len(self._held)

    def frames(self) -> Iterator[Frame]:
        """Every frame of the video, once: the held ones, then the rest of the same decoder."""
        if self._taken:
            raise RuntimeError("the prefetched frames were already taken")
        self._taken = True
        self._thread.join()
        while self._held:  # popped one by one: memory is given back as the render goes
            yield self._held.popleft()
        if self._error is not None:
            raise self._error
        yield from self._frames

    def close(self) -> None:
        """Stop reading ahead, drop what is held and close the decoder."""
        self._stop.set()
        self._thread.join()
        self._held.clear()
        self._frames.close()

    def __enter__(self) -> FramePrefetch:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
