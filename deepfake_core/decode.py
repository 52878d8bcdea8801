"""Video decoding and temporal sampling with PyAV (numpy + av only); the writer is ``deepfake_core.encode``.

The Triton Python models import this module: it must not import torch or cv2.

- ``sample_video``: T frames evenly spaced over the whole video, RGB uint8 at analysis resolution, in ONE
  sequential decode pass (random seeks are 2 to 5 times slower with long GOPs). The frame count comes from a
  cheap demux pass (no decoding) because many containers (Matroska, WebM, some AVI) don't store it or store
  it wrongly; limits are checked from the headers and that pass, before anything is decoded.
- ``iter_video_frames``: every frame, one at a time (the gateway's overlay renderer).
- ``probe_video``: size, rate, frame count, duration and codec.
- ``i420_planes``/``pack_i420``: the packed I420 frame layout of ``pixel_format="yuv420p"`` (what
  ``deepfake_core.encode.H264Writer.write_i420`` takes).

Every failure to read a video raises ``VideoDecodeError`` (or ``VideoTooLargeError`` for the limits), both
``VideoError`` (a ``ValueError``) with a message for the person who sent the file: no ``av.error`` escapes.

Frames are returned the way players show them: a display rotation stored by phones (multiples of 90 degrees)
is applied, and ``width``/``height`` are the displayed size. Timestamps are seconds from the video stream's
start (``frame.time`` minus the stream's start time), or ``index / fps`` when a frame has no timestamp.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import av
import numpy as np

from deepfake_core.constants import (
    ANALYSIS_MAX_SIDE,
    DECODE_THREADS,
    NUM_FRAMES,
    VIDEO_MAX_DURATION_S,
    VIDEO_MAX_FRAMES,
    VIDEO_MAX_PIXELS,
)

__all__ = [
    "DECODE_THREADS",
    "SampledVideo",
    "Source",
    "VideoDecodeError",
    "VideoError",
    "VideoInfo",
    "VideoLimits",
    "VideoTooLargeError",
    "evenly_spaced_indices",
    "i420_planes",
    "iter_video_frames",
    "pack_i420",
    "probe_video",
    "sample_video",
]

Source = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


# Demuxers that must never be accepted: still images, text rendered as video, and playlists or lists of other
# files (they make FFmpeg open other files or URLs).
_STILL_IMAGE_FORMATS = frozenset({"image2", "image2pipe", "ico", "tiff_pipe", "webp_pipe"})
# Animated images: analysed as videos they would give a verdict on a meme or a sticker; refused like stills.
_ANIMATED_IMAGE_FORMATS = frozenset({"gif", "apng", "webp"})
_TEXT_FORMATS = frozenset({"tty", "bin", "xbin", "adf", "idf", "srt", "ass", "webvtt", "subviewer", "jacosub"})
# The input itself is a Python file object (custom I/O, no protocol); no protocol is allowed for nested opens.
_OPEN_OPTIONS = {"protocol_whitelist": "none"}
_REFERENCE_FORMATS = frozenset({"hls", "dash", "concat", "ffmetadata", "mpl2", "data", "sdp", "rtsp", "imf"})


class VideoError(ValueError):
    """The input can't be used as a video; ``str(error)`` is a message for the person who sent it."""


class VideoDecodeError(VideoError):
    """Not a video, or a corrupt, truncated or empty one (no video stream, no frame decoded)."""


class VideoTooLargeError(VideoError):
    """The video exceeds a limit (frame size, duration, frame count or file size) of ``VideoLimits``."""


@dataclass(frozen=True)
class VideoLimits:
    """What a reader accepts; checked from the headers and a demux pass, before any frame is decoded."""

    max_pixels: int = VIDEO_MAX_PIXELS  # width * height of one frame
    max_duration_s: float = VIDEO_MAX_DURATION_S
    max_frames: int = VIDEO_MAX_FRAMES
    max_bytes: int | None = None  # None: no limit on the file size


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` reports. ``width``/``height`` are the displayed size (rotation applied)."""

    width: int
    height: int
    fps: float
    frame_count: int
    duration: float  # seconds
    codec: str  # decoder name, e.g. "h264", "vp9", "mpeg4"
    container: str = ""  # FFmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"
    rotation: int = 0  # display rotation applied, degrees counter-clockwise (0, 90, 180 or 270)


@dataclass
class SampledVideo:
    """Frames chosen by ``sample_video`` and what is known of the whole video.

    ``frames``: (T, H, W, 3) uint8 RGB at analysis resolution (longer side <= max_side, aspect kept);
    ``indices``: (T,) int64 frame numbers (0-based, in decode order of the shown frames); ``timestamps``:
    (T,) float32 seconds; ``width``/``height``: the ORIGINAL displayed size; ``scale``: analysis / original.
    """

    frames: np.ndarray
    indices: np.ndarray
    timestamps: np.ndarray
    fps: float
    frame_count: int
    width: int
    height: int
    scale: float
    rotation: int = 0

    @property
    def duration(self) -> float:
        """The video's duration estimated as frame_count / fps (seconds)."""
        return self.frame_count / self.fps if self.fps > 0 else 0.0


def evenly_spaced_indices(frame_count: int, num: int) -> np.ndarray:
    """``num`` frame indices evenly spaced over ``frame_count`` frames, each centred in its segment (int64).

    The video is cut into ``num`` equal segments and the middle frame of each is taken:
    ``floor((k + 0.5) * frame_count / num)``. Indices are strictly increasing. When ``frame_count <= num``
    every frame is returned once (``arange(frame_count)``): fewer than ``num`` indices, never duplicates.
    """
    if num < 1:
        raise ValueError(f"num must be at least 1, got {num}")
    if frame_count <= 0:
        return np.zeros(0, dtype=np.int64)
    if frame_count <= num:
        return np.arange(frame_count, dtype=np.int64)
    k = np.arange(num, dtype=np.int64)
    return ((2 * k + 1) * frame_count) // (2 * num)


def analysis_size(width: int, height: int, max_side: int) -> tuple[int, int, float]:
    """(width, height, scale) with the longer side at most ``max_side`` (never upscaled), aspect kept."""
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    longer = max(width, height)
    if longer <= max_side:
        return width, height, 1.0
    scale = max_side / longer
    return max(1, round(width * scale)), max(1, round(height * scale)), scale


# --- opening ------------------------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """A short readable reason from an av/FFmpeg (or other) exception, without file names or errno."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    text = str(text).strip().rstrip(".")
    return text[:1].lower() + text[1:]


class _Input:
    """Opens the source as often as needed (each open reads it from its start); closes what it opened.

    Everything is read through Python file objects, never by FFmpeg's own protocols, and nested opens are
    refused (``protocol_whitelist=none``): a playlist (HLS), concat list or mov reference can't make FFmpeg
    read other local files or URLs.
    """

    def __init__(self, source: Source) -> None:
        self._files: list[IO[bytes]] = []
        self._data: bytes | None = None
        self._path: str | None = None
        self._stream: IO[bytes] | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._data = bytes(source)
            self.size: int | None = len(self._data)
        elif isinstance(source, (str, os.PathLike)):
            self._path = os.fspath(source)
            self.size = os.path.getsize(self._path)  # FileNotFoundError: a caller bug, not a bad video
        elif hasattr(source, "read"):
            seekable = getattr(source, "seekable", lambda: False)()
            if seekable and source.tell() == 0:  # FFmpeg seeks to absolute positions: only from the start
                self._stream = source
                self.size = source.seek(0, io.SEEK_END)
                source.seek(0)
            else:  # a pipe or socket, or a stream positioned past its start: read the rest once
                self._data = source.read()
                self.size = len(self._data)
        else:
            raise TypeError(f"expected bytes, a path or a binary file object, got {type(source).__name__}")
        if self.size == 0:
            raise VideoDecodeError("the file is empty: not a video")

    def open(self) -> Any:
        """A fresh ``av`` input container positioned at the start; any failure -> VideoDecodeError."""
        if self._data is not None:
            fileobj: IO[bytes] = io.BytesIO(self._data)
        elif self._path is not None:
            fileobj = open(self._path, "rb")  # noqa: SIM115 - closed in close()
            self._files.append(fileobj)
        else:
            assert self._stream is not None
            self._stream.seek(0)
            fileobj = self._stream
        try:
            return av.open(fileobj, mode="r", container_options=_OPEN_OPTIONS, metadata_errors="ignore")
        except Exception as exc:  # av.error.* and anything else FFmpeg's probing raises
            raise VideoDecodeError(
                f"could not decode the video: {_reason(exc)} (corrupt, truncated or not a video)"
            ) from exc

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files.clear()

    def __enter__(self) -> _Input:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _video_stream(container: Any) -> Any:
    """The main video stream (cover pictures skipped), or VideoDecodeError saying why there is none."""
    fmt = container.format.name
    names = set(fmt.split(","))
    if names & _STILL_IMAGE_FORMATS or any(n.endswith("_pipe") for n in names):
        raise VideoDecodeError(f"not a video: the file is a still image ({fmt})")
    if names & _ANIMATED_IMAGE_FORMATS:
        raise VideoDecodeError(f"not a video: the file is an animated image ({fmt}); send it as a video file")
    if names & _TEXT_FORMATS:
        raise VideoDecodeError(f"not a video: the file looks like text ({fmt})")
    if names & _REFERENCE_FORMATS:
        raise VideoDecodeError(f"not a video: playlists and lists of other files are not accepted ({fmt})")
    attached = av.stream.Disposition.attached_pic
    candidates = [s for s in container.streams.video if not (s.disposition & attached)]
    if not candidates:
        if container.streams.audio:
            raise VideoDecodeError("not a video: no video stream found (audio only?)")
        raise VideoDecodeError("not a video: no video stream found")
    return candidates[0]


def _set_threads(stream: Any, threads: int) -> None:
    ctx = stream.codec_context
    if threads == 1:
        ctx.thread_type = "NONE"
        ctx.thread_count = 1
    else:  # 0: FFmpeg chooses the count
        ctx.thread_type = "AUTO"
        ctx.thread_count = threads


@dataclass
class _Header:
    width: int
    height: int
    fps: float
    duration: float | None
    codec: str
    container: str
    start: float | None  # stream start time, seconds


def _header(container: Any, stream: Any) -> _Header:
    ctx = stream.codec_context
    fps = 0.0
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            fps = float(rate)
            break
    duration: float | None = None
    if stream.duration is not None and stream.time_base and stream.duration > 0:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None and container.duration > 0:
        duration = container.duration / av.time_base
    start = None
    if stream.start_time is not None and stream.time_base:
        start = float(stream.start_time * stream.time_base)
    return _Header(ctx.width or 0, ctx.height or 0, fps, duration, ctx.name or "", container.format.name, start)


def _check_size(width: int, height: int, limits: VideoLimits) -> None:
    if width * height > limits.max_pixels:
        raise VideoTooLargeError(f"frame size {width}x{height} exceeds the limit of {limits.max_pixels} pixels")


def _check_duration(duration: float | None, limits: VideoLimits) -> None:
    if duration is not None and duration > limits.max_duration_s:
        raise VideoTooLargeError(f"duration {duration:.1f} s exceeds the limit of {limits.max_duration_s:g} s")


def _check_header(header: _Header, size: int | None, limits: VideoLimits) -> None:
    if limits.max_bytes is not None and size is not None and size > limits.max_bytes:
        raise VideoTooLargeError(f"file size {size} bytes exceeds the limit of {limits.max_bytes} bytes")
    _check_size(header.width, header.height, limits)
    _check_duration(header.duration, limits)


def _count_frames(container: Any, stream: Any, limits: VideoLimits) -> int:
    """Frames of ``stream`` counted by demuxing its packets (no decoding); stops at the first read error.

    Packets the demuxer marks to discard (edit lists) and empty ones don't count.
    """
    count = 0
    try:
        for packet in container.demux(stream):
            if packet.size and not packet.is_discard:
                count += 1
                if count > limits.max_frames:
                    raise VideoTooLargeError(f"the video has more than {limits.max_frames} frames (the limit)")
    except VideoError:
        raise
    except Exception:  # truncated or corrupt tail: the packets read so far are what there is
        pass
    return count


def _rotation(frame: Any) -> int:
    """The frame's display rotation, counter-clockwise degrees in {0, 90, 180, 270}."""
    try:
        degrees = int(frame.rotation or 0)
    except Exception:
        return 0
    return (round(degrees / 90) % 4) * 90


class _Converter:
    """Decoded frame -> RGB uint8 (H, W, 3) at analysis size in one swscale call, display rotation applied.

    ``pixel_format="yuv420p"``: I420 instead (``i420_planes`` layout), which is what decoders give and encoders
    take: no colour conversion at all. Needs an even output size.
    """

    def __init__(self, first: Any, max_side: int, limits: VideoLimits, pixel_format: str = "rgb24") -> None:
        if pixel_format not in ("rgb24", "yuv420p"):
            raise ValueError(f"pixel_format must be rgb24 or yuv420p, got {pixel_format!r}")
        self.pixel_format = pixel_format
        self.rotation = _rotation(first)
        width, height = first.width, first.height
        _check_size(width, height, limits)  # the header may not have known the size
        self.out_w, self.out_h, self.scale = analysis_size(width, height, max_side)
        turned = self.rotation in (90, 270)
        self.width, self.height = (height, width) if turned else (width, height)
        if pixel_format == "yuv420p" and (self.out_w % 2 or self.out_h % 2):
            raise ValueError(f"yuv420p output needs an even size, got {self.out_w}x{self.out_h}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of every array returned (a stream that changes size mid-way is scaled to the first size)."""
        turned = self.rotation in (90, 270)
        return (self.out_w, self.out_h, 3) if turned else (self.out_h, self.out_w, 3)

    def __call__(self, frame: Any) -> np.ndarray:
        if self.pixel_format == "yuv420p":
            yuv = frame.to_ndarray(format="yuv420p", width=self.out_w, height=self.out_h)
            if not self.rotation:
                return np.ascontiguousarray(yuv)
            planes = i420_planes(yuv, self.out_w, self.out_h)
            return pack_i420(*(np.rot90(plane, self.rotation // 90) for plane in planes))
        rgb = frame.to_ndarray(format="rgb24", width=self.out_w, height=self.out_h)
        if self.rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, self.rotation // 90))
        return rgb


def i420_planes(yuv: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (H, W), U and V (H/2, W/2) planes of a packed I420 frame (``(H * 3 / 2, W)`` uint8, as PyAV's
    ``to_ndarray()`` gives for yuv420p). Writing to a view writes to the frame."""
    flat = yuv.reshape(-1)
    luma, chroma = width * height, (width // 2) * (height // 2)
    return (
        flat[:luma].reshape(height, width),
        flat[luma : luma + chroma].reshape(height // 2, width // 2),
        flat[luma + chroma : luma + 2 * chroma].reshape(height // 2, width // 2),
    )


def pack_i420(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Y, U, V planes -> one packed I420 frame ``(H * 3 / 2, W)`` uint8 (even sizes)."""
    return np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(-1, y.shape[1])


def _frame_time(frame: Any, index: int, fps: float, start: float) -> float:
    """Seconds from the stream's start: ``frame.time - start``, or ``index / fps`` without a timestamp."""
    t = frame.time
    if t is None:
        return index / fps if fps > 0 else 0.0
    return float(t) - start


def _start_time(header_start: float | None, first: Any) -> float:
    """The stream's start time, or the first decoded frame's time when the stream has none."""
    if header_start is not None:
        return header_start
    return float(first.time) if first.time is not None else 0.0


class _DecodeRun:
    """Iterate decoded frames; remember the first error instead of raising it."""

    def __init__(self, container: Any, stream: Any) -> None:
        self._it = container.decode(stream)
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                frame = next(self._it)
            except StopIteration:
                return
            except Exception as exc:  # av.error.* (corrupt data, truncated file) or anything else from FFmpeg
                self.error = exc
                return
            yield frame


def _no_frames(error: BaseException | None) -> VideoDecodeError:
    if error is not None:
        return VideoDecodeError(f"could not decode the video: {_reason(error)}")
    return VideoDecodeError("the video has no frames")


# --- public readers -----------------------------------------------------------------------------------------


def _checked_header(inp: _Input, limits: VideoLimits) -> tuple[_Header, int]:
    """Open once: the stream's header and its frame count (demuxed), both checked against the limits."""
    with inp.open() as container:
        stream = _video_stream(container)
        header = _header(container, stream)
        _check_header(header, inp.size, limits)
        frame_count = _count_frames(container, stream, limits)
    if frame_count == 0:
        raise VideoDecodeError("the video has no frames")
    return header, frame_count


def probe_video(source: Source, limits: VideoLimits | None = None) -> VideoInfo:
    """Size, rate, frame count (demuxed, not decoded), duration and codec; decodes only the first frame.

    With ``limits``, they are checked as ``sample_video`` does (VideoTooLargeError).
    """
    limits = limits or VideoLimits(max_pixels=2**62, max_duration_s=float("inf"), max_frames=2**62)
    with _Input(source) as inp:
        header, frame_count = _checked_header(inp, limits)
        with inp.open() as container:
            stream = _video_stream(container)
            _set_threads(stream, 1)
            run = _DecodeRun(container, stream)
            first = next(iter(run), None)
            if first is None:
                raise _no_frames(run.error)
            rotation = _rotation(first)
            width, height = first.width, first.height
    fps = header.fps or (frame_count / header.duration if header.duration else 0.0)
    duration = header.duration if header.duration is not None else (frame_count / fps if fps else 0.0)
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(width, height, fps, frame_count, duration, header.codec, header.container, rotation)


def sample_video(
    source: Source,
    num_frames: int = NUM_FRAMES,
    max_side: int = ANALYSIS_MAX_SIDE,
    limits: VideoLimits = VideoLimits(),  # noqa: B008 - frozen, immutable
    *,
    threads: int = DECODE_THREADS,
) -> SampledVideo:
    """``num_frames`` frames evenly spaced over the whole video (see ``evenly_spaced_indices``), RGB uint8.

    Source: bytes, a path or a binary file object, in any container/codec FFmpeg reads (mp4, mov, mkv,
    webm, avi...). Steps: open, check the limits from the headers, count frames by demuxing (no decoding),
    then decode once in order, converting (and scaling, in the same swscale call) only the chosen frames,
    and stop after the last one. A video that ends early (truncated, or fewer frames than packets) keeps the
    frames decoded: targets past the end fall back to the last decoded frame, so T may be < ``num_frames``.

    Raises VideoDecodeError (not a video, corrupt, no frame decoded) or VideoTooLargeError (``limits``).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    with _Input(source) as inp:
        header, frame_count = _checked_header(inp, limits)
        fps = header.fps or (frame_count / header.duration if header.duration else 0.0)
        if header.duration is None and fps > 0:
            _check_duration(frame_count / fps, limits)
        targets = evenly_spaced_indices(frame_count, num_frames)

        frames = np.empty(0, np.uint8)  # (len(targets), H, W, 3), allocated at the first frame
        indices: list[int] = []
        times: list[float] = []
        with inp.open() as container:
            stream = _video_stream(container)
            _set_threads(stream, threads)
            run = _DecodeRun(container, stream)
            convert: _Converter | None = None
            start = 0.0
            next_target = 0
            decoded = 0
            last: tuple[int, Any] | None = None
            for index, frame in enumerate(run):
                decoded = index + 1
                if convert is None:
                    convert = _Converter(frame, max_side, limits)
                    start = _start_time(header.start, frame)
                    frames = np.empty((len(targets), *convert.shape), np.uint8)
                if index == targets[next_target]:
                    frames[len(indices)] = convert(frame)
                    indices.append(index)
                    times.append(_frame_time(frame, index, fps, start))
                    next_target += 1
                    if next_target == len(targets):
                        break
                else:
                    last = (index, frame)
            if convert is None:
                raise _no_frames(run.error)
            if next_target < len(targets):  # ended early: nearest decoded frame for the targets left
                frame_count = decoded
                if last is not None and (not indices or last[0] > indices[-1]):
                    frames[len(indices)] = convert(last[1])
                    indices.append(last[0])
                    times.append(_frame_time(last[1], last[0], fps, start))
    return SampledVideo(
        frames=frames if len(indices) == len(frames) else frames[: len(indices)].copy(),
        indices=np.asarray(indices, dtype=np.int64),
        timestamps=np.asarray(times, dtype=np.float32),
        fps=fps,
        frame_count=frame_count,
        width=convert.width,
        height=convert.height,
        scale=convert.scale,
        rotation=convert.rotation,
    )


def iter_video_frames(
    source: Source,
    max_side: int = ANALYSIS_MAX_SIDE,
    limits: VideoLimits = VideoLimits(),  # noqa: B008 - frozen, immutable
    *,
    threads: int = DECODE_THREADS,
    pixel_format: str = "rgb24",
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Every frame as ``(index, seconds, rgb)``, one at a time (the whole video is never held in memory).

    ``pixel_format="yuv420p"`` gives packed I420 frames (``i420_planes``) instead: no colour conversion, for a
    re-encoder; the analysis size must then be even (ValueError otherwise, before anything is yielded).

    Indices, timestamps, scaling and rotation match ``sample_video``'s. Limits are checked before decoding,
    except the frame count (no demux pass here): going past ``max_frames`` raises VideoTooLargeError when it
    happens. A decode error after at least one frame ends the iteration quietly (a truncated file); before
    the first frame it raises VideoDecodeError.
    """
    with _Input(source) as inp, inp.open() as container:
        stream = _video_stream(container)
        header = _header(container, stream)
        _check_header(header, inp.size, limits)
        _set_threads(stream, threads)
        run = _DecodeRun(container, stream)
        convert: _Converter | None = None
        start = 0.0
        for index, frame in enumerate(run):
            if convert is None:
                convert = _Converter(frame, max_side, limits, pixel_format)
                start = _start_time(header.start, frame)
            if index >= limits.max_frames:
                raise VideoTooLargeError(f"the video has more than {limits.max_frames} frames (the limit)")
            yield index, _frame_time(frame, index, header.fps, start), convert(frame)
        if convert is None:
            raise _no_frames(run.error)
