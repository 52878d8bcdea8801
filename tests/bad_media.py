"""A corpus of bad inputs for the gateway, generated in code: each is a named file a user might send instead of
a usable video, with the answer it must get (status, error type, words its message must contain).

``BAD_INPUTS`` lists them (names and expected answers, cheap: pytest parametrises on it); ``case.build(sources)``
makes the bytes, where ``Sources(tmpdir)`` holds what the cases are cut from (about 1.5 MB in total, ~1 s to
build all): ``tests.media``'s videos,
cut, patched or wrapped: random and empty files, mp4s truncated at several points, containers whose stream is
broken, images and documents renamed ``.mp4``, a GIF, playlists, archives, a one-frame video, a 10-hour sparse
video and headers that claim 16000 x 16000 frames.
"""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import av
import cv2
import numpy as np

from tests.media import bad_inputs, face_video, faceless_frames, write_video

# Words a message about an unusable file contains (at least one).
UNUSABLE = ("video", "decode", "frame", "stream", "empty")


@dataclass(frozen=True)
class BadInput:
    """One bad input: its file name (the extension matters to no one but the user), bytes and expected answer."""

    name: str
    filename: str
    build: Callable[[Sources], bytes]
    status: int = 422
    error_type: str = "unsupported_video"
    words: tuple[str, ...] = UNUSABLE  # the message contains at least one of these (case-insensitive)
    upload: bool = False  # also sent as an upload (a subset: the URL path covers every case)


def mp4_boxes(data: bytes) -> dict[bytes, tuple[int, int]]:
    """Top-level mp4 boxes: type -> (offset, size)."""
    boxes: dict[bytes, tuple[int, int]] = {}
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size < 8:
            break
        boxes.setdefault(kind, (offset, size))
        offset += size
    return boxes


def _small_mp4(path: Path, faststart: bool) -> bytes:
    face_video(path, width=160, height=96, fps=25, seconds=0.6, faststart=faststart)
    return path.read_bytes()


def sparse_video(hours: float = 10.0, frames: int = 3, side: int = 64) -> bytes:
    """An mp4 of a few frames whose timestamps (time base 1 s) span ``hours``: tiny, yet it claims that long."""
    buf = io.BytesIO()
    last = int(hours * 3600)
    with av.open(buf, mode="w", format="mp4") as container:
        stream = cast(Any, container.add_stream("libx264", rate=25, options={"preset": "ultrafast"}))
        stream.width, stream.height, stream.pix_fmt = side, side, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((side, side, 3), 40 + 60 * i, np.uint8), format="rgb24")
            frame.pts = last * i // (frames - 1)
            frame.time_base = Fraction(1, 1)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def y4m_header_only(width: int, height: int) -> bytes:
    """A YUV4MPEG2 stream whose header claims ``width x height`` frames, followed by 4 KB of zeros: a tiny file
    that would need gigabytes to decode (FFmpeg sizes its buffers from the header)."""
    return f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + bytes(4096)


def animated_gif(width: int = 96, height: int = 64, seconds: float = 0.6) -> bytes:
    """An animated GIF (FFmpeg reads it as a video stream)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="gif") as container:
        stream = cast(Any, container.add_stream("gif", rate=10))
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb8"
        for i, rgb in enumerate(faceless_frames(width, height, 10, seconds)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="rgb8")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def _image(ext: str) -> bytes:
    rgb = next(faceless_frames(96, 64, 25, 0.04))
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def _zip_bomb_like() -> bytes:
    """A ZIP whose one member ``video.mp4`` inflates from ~20 KB to 20 MB of zeros."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("video.mp4", bytes(20_000_000))
    return buf.getvalue()


def _replace(data: bytes, offset: int, payload: bytes) -> bytes:
    out = bytearray(data)
    out[offset : offset + len(payload)] = payload
    return bytes(out)


class Sources:
    """What the cases are made from, each built once on first use: small mp4s (faststart and index-last), their
    top-level boxes, ``tests.media.bad_inputs`` and a seeded random generator."""

    def __init__(self, tmpdir: str | Path) -> None:
        self.tmp = Path(tmpdir)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.rng = np.random.default_rng(20261121)

    @cached_property
    def basic(self) -> dict[str, bytes]:
        return bad_inputs(self.tmp / "basic")

    @cached_property
    def faststart(self) -> bytes:
        return _small_mp4(self.tmp / "faststart.mp4", faststart=True)

    @cached_property
    def late(self) -> bytes:
        return _small_mp4(self.tmp / "late_index.mp4", faststart=False)

    def box(self, kind: bytes, late: bool = False) -> tuple[int, int]:
        """(offset, size) of a top-level box of the faststart (or index-last) mp4."""
        return mp4_boxes(self.late if late else self.faststart)[kind]

    def with_media(self, media: bytes, base: bytes | None = None) -> bytes:
        """The faststart mp4 (or ``base``, laid out alike) with its media data replaced (same size)."""
        at, size = self.box(b"mdat")
        assert len(media) == size - 8
        return _replace(self.faststart if base is None else base, at + 8, media)

    def random(self, n: int) -> bytes:
        return self.rng.integers(0, 256, n, dtype=np.uint8).tobytes()

    def one_frame(self) -> bytes:
        path = self.tmp / "one_frame.mp4"
        write_video(path, [next(faceless_frames(96, 64, 25, 0.04))], fps=25)
        return path.read_bytes()

    def claims_huge(self) -> bytes:
        """The faststart mp4 whose sample entry says 16000 x 16000 and whose frames are zeroed."""
        avc1 = self.faststart.index(b"avc1")  # width and height are 28 bytes after the type
        patched = _replace(self.faststart, avc1 + 28, struct.pack(">HH", 16000, 16000))
        return self.with_media(bytes(self.box(b"mdat")[1] - 8), patched)


PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://169.254.169.254/latest/meta-data/seg0.ts\n"
CONCAT = b"ffconcat version 1.0\nfile '/etc/passwd'\nfile 'http://169.254.169.254/latest/meta-data/'\n"
SDP = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\n"
MKV_HEADER_ONLY = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01" + bytes(64)

B = BadInput
BAD_INPUTS: list[BadInput] = [
    # Nothing usable at all.
    B("empty", "empty.mp4", lambda s: s.basic["empty"], words=("empty",), upload=True),
    B("one_byte", "one_byte.mp4", lambda s: b"\x00"),
    B("zeros_64k", "zeros.mp4", lambda s: bytes(65536)),
    B("random_64k", "random.mp4", lambda s: s.basic["random"], upload=True),
    B("random_1m", "random_big.mp4", lambda s: s.random(1 << 20)),
    B("text", "notes.mp4", lambda s: s.basic["text"], words=("text",)),
    # Truncated mp4s, at several points.
    B("truncated_in_ftyp", "cut_ftyp.mp4", lambda s: s.faststart[:20]),
    B("truncated_after_ftyp", "cut_after_ftyp.mp4", lambda s: s.faststart[: s.box(b"moov")[0]]),
    B("truncated_in_moov", "cut_moov.mp4", lambda s: s.faststart[: sum(s.box(b"moov")) - s.box(b"moov")[1] // 2]),
    B("truncated_after_moov", "cut_after_moov.mp4", lambda s: s.faststart[: s.box(b"mdat")[0] + 8], upload=True),
    B("truncated_late_index_30", "cut30.mp4", lambda s: s.basic["truncated"]),
    B("truncated_late_index_90", "cut90.mp4", lambda s: s.late[: s.box(b"moov", late=True)[0] + 16]),
    B("truncated_head", "no_head.mp4", lambda s: s.basic["truncated_head"]),
    B("ftyp_then_random", "ftyp_random.mp4", lambda s: s.faststart[: s.box(b"moov")[0]] + s.random(8192)),
    # A valid container with a broken stream.
    B("stream_zeroed", "zeroed.mp4", lambda s: s.with_media(bytes(s.box(b"mdat")[1] - 8)), upload=True),
    B("stream_random", "garbled.mp4", lambda s: s.with_media(s.random(s.box(b"mdat")[1] - 8))),
    B("codec_config_zeroed", "no_sps.mp4", lambda s: _replace(s.faststart, s.faststart.index(b"avcC") + 4, bytes(24))),
    B("claims_16000x16000_broken_stream", "claims_huge.mp4", Sources.claims_huge),
    B("zero_frames_avi", "empty_stream.avi", lambda s: s.basic["zero_frames"], words=("no frames",)),
    B("mkv_header_only", "header.mkv", lambda s: MKV_HEADER_ONLY),
    # Not video: audio, images, documents, archives, lists of other files (whatever the extension says).
    B("audio_only", "song.mp4", lambda s: s.basic["audio_only"], words=("audio",), upload=True),
    B("png_renamed", "still.mp4", lambda s: s.basic["png"], words=("image",)),
    B("jpeg_renamed", "photo.mp4", lambda s: _image(".jpg"), words=("image",), upload=True),
    B("bmp_renamed", "bitmap.mp4", lambda s: _image(".bmp"), words=("image",)),
    B("gif_animated", "animation.gif", lambda s: animated_gif(), words=("gif",), upload=True),
    B("gif_renamed", "animation.mp4", lambda s: animated_gif(seconds=0.3), words=("gif",)),
    B("playlist_m3u8", "video.m3u8", lambda s: PLAYLIST, words=("playlist",), upload=True),
    B("playlist_renamed", "playlist.mp4", lambda s: PLAYLIST, words=("playlist",)),
    B("concat_list", "list.mp4", lambda s: CONCAT, words=("concat",)),
    B("sdp", "stream.sdp", lambda s: SDP, words=("sdp",)),
    B("html_error_page", "video.mp4", lambda s: b"<!DOCTYPE html><html><body>Sign in</body></html>", words=("html",)),
    B("json_document", "clip.mp4", lambda s: b'{"error": "expired link"}', words=("json",)),
    B("pdf_renamed", "report.mp4", lambda s: b"%PDF-1.7\n" + bytes(2048), words=("pdf",)),
    B("elf_wrong_extension", "program.mp4", lambda s: b"\x7fELF\x02\x01\x01" + bytes(4089), words=("program",)),
    B("zip_bomb_like", "video.zip.mp4", lambda s: _zip_bomb_like(), words=("zip",), upload=True),
    B("gzip_of_zeros", "video.mp4.gz", lambda s: gzip.compress(bytes(5_000_000)), words=("gzip",)),
    # Videos beyond the limits: refused before anything is decoded or sent to Triton.
    B("one_frame", "one_frame.mp4", Sources.one_frame, words=("1 frame",), upload=True),
    B("ten_hour_sparse", "ten_hours.mp4", lambda s: sparse_video(10), 413, "too_large", ("duration",), upload=True),
    B(
        "frame_16000x16000",
        "huge.y4m",
        lambda s: y4m_header_only(16000, 16000),
        413,
        "too_large",
        ("16000x16000",),
        True,
    ),
    B("frame_16384x16384", "huger.y4m", lambda s: y4m_header_only(16384, 16384)),
]
del B
assert len({c.name for c in BAD_INPUTS}) == len(BAD_INPUTS), "duplicate case names"
