"""deepfake_core.decode: sampling over containers, scaling, limits, bad inputs, I420 frames."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from deepfake_core import decode
from deepfake_core.decode import (
    VideoDecodeError,
    VideoError,
    VideoLimits,
    VideoTooLargeError,
    evenly_spaced_indices,
    iter_video_frames,
    probe_video,
    sample_video,
)
from tests.media import bad_inputs, face_frames, face_video, truncated_faststart

FPS = 25
SECONDS = 2.0
W, H = 640, 360
COUNT = round(FPS * SECONDS)
CONTAINERS = [".mp4", ".mov", ".mkv", ".webm", ".avi"]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video-media")


@pytest.fixture(scope="module")
def originals() -> list[np.ndarray]:
    """The frames the test videos were encoded from."""
    return [frame for frame, _ in face_frames(W, H, FPS, SECONDS)]


@pytest.fixture(scope="module")
def videos(media: Path) -> dict[str, Path]:
    out = {}
    for suffix in CONTAINERS:
        path = media / f"face{suffix}"
        assert len(face_video(path, width=W, height=H, fps=FPS, seconds=SECONDS)) == COUNT
        out[suffix] = path
    return out


def nearest_original(frame: np.ndarray, originals: list[np.ndarray]) -> int:
    """Index of the original frame (scaled to ``frame``'s size) closest to ``frame``."""
    h, w = frame.shape[:2]
    errors = [
        np.abs(cv2.resize(o, (w, h), interpolation=cv2.INTER_AREA).astype(np.int16) - frame).mean() for o in originals
    ]
    return int(np.argmin(errors))


# --- sampling -----------------------------------------------------------------------------------------------


def test_evenly_spaced_indices() -> None:
    idx = evenly_spaced_indices(300, 32)
    assert idx.dtype == np.int64 and idx.shape == (32,)
    assert idx[0] == 4 and idx[-1] == 295  # centred in segments of 9.375 frames
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(evenly_spaced_indices(10, 5), [1, 3, 5, 7, 9])
    np.testing.assert_array_equal(evenly_spaced_indices(8, 8), np.arange(8))
    np.testing.assert_array_equal(evenly_spaced_indices(5, 32), np.arange(5))  # short video: every frame once
    assert evenly_spaced_indices(0, 4).shape == (0,)
    for n in (33, 100, 1001):
        for t in (1, 7, 32, 33):
            i = evenly_spaced_indices(n, t)
            assert len(np.unique(i)) == len(i) == min(n, t) and i.min() >= 0 and i.max() < n
    with pytest.raises(ValueError):
        evenly_spaced_indices(10, 0)


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_sample_video_every_container(videos: dict[str, Path], originals: list[np.ndarray], suffix: str) -> None:
    s = sample_video(videos[suffix], num_frames=8, max_side=320)
    expected = evenly_spaced_indices(COUNT, 8)
    assert s.frames.shape == (8, 180, 320, 3) and s.frames.dtype == np.uint8
    np.testing.assert_array_equal(s.indices, expected)
    assert s.indices.dtype == np.int64 and s.timestamps.dtype == np.float32
    np.testing.assert_allclose(s.timestamps, expected / FPS, atol=1e-3)
    assert s.frame_count == COUNT and s.fps == pytest.approx(FPS)
    assert (s.width, s.height, s.scale) == (W, H, 0.5)
    # The content is that of the frame the index names (the head moves between frames).
    assert [nearest_original(f, originals) for f in s.frames] == expected.tolist()
    info = probe_video(videos[suffix])
    assert (info.width, info.height, info.frame_count) == (W, H, COUNT)
    assert info.fps == pytest.approx(FPS) and info.duration == pytest.approx(SECONDS, abs=0.05)
    assert info.codec == {".webm": "vp9", ".avi": "mpeg4"}.get(suffix, "h264")


def test_sources_bytes_path_and_file_objects(videos: dict[str, Path]) -> None:
    path = videos[".mp4"]
    data = path.read_bytes()

    class Pipe(io.RawIOBase):
        """A non-seekable stream."""

        def __init__(self, payload: bytes) -> None:
            self._buf = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            return self._buf.readinto(b)

    ref = sample_video(path, 4)
    with open(path, "rb") as fileobj:
        for source in (str(path), data, bytearray(data), io.BytesIO(data), fileobj, Pipe(data)):
            s = sample_video(source, 4)
            np.testing.assert_array_equal(s.indices, ref.indices)
            np.testing.assert_array_equal(s.frames, ref.frames)
    # A seekable file object is read from its current position.
    prefixed = io.BytesIO(b"junk" + data)
    prefixed.seek(4)
    np.testing.assert_array_equal(sample_video(prefixed, 4).frames, ref.frames)


def test_scaling_keeps_aspect_and_max_side(media: Path) -> None:
    portrait = media / "portrait.mp4"
    face_video(portrait, width=360, height=640, fps=FPS, seconds=0.4)
    s = sample_video(portrait, 4, max_side=320)
    assert s.frames.shape == (4, 320, 180, 3) and (s.width, s.height) == (360, 640) and s.scale == 0.5
    s = sample_video(portrait, 4, max_side=333)
    assert s.frames.shape[1:3] == (333, round(360 * 333 / 640))
    s = sample_video(portrait, 4, max_side=2000)  # never upscaled
    assert s.frames.shape[1:3] == (640, 360) and s.scale == 1.0


def test_short_video_gives_every_frame(media: Path) -> None:
    path = media / "short.mp4"
    face_video(path, width=320, height=180, fps=FPS, seconds=0.2)  # 5 frames
    s = sample_video(path, 32)
    np.testing.assert_array_equal(s.indices, np.arange(5))
    assert s.frames.shape == (5, 180, 320, 3) and s.frame_count == 5


def test_display_rotation_is_applied(media: Path) -> None:
    path = media / "phone.mp4"
    # Shown turned 90 degrees clockwise, as phones store portrait videos.
    face_video(path, width=320, height=180, fps=FPS, seconds=0.4, rotation=-90)
    plain = media / "plain.mp4"
    face_video(plain, width=320, height=180, fps=FPS, seconds=0.4)
    s, ref = sample_video(path, 3), sample_video(plain, 3)
    assert s.frames.shape == (3, 320, 180, 3) and (s.width, s.height, s.rotation) == (180, 320, 270)
    np.testing.assert_array_equal(s.frames, np.rot90(ref.frames, -1, axes=(1, 2)))
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (180, 320, 270)
    assert next(iter_video_frames(path))[2].shape == (320, 180, 3)


# --- streaming ----------------------------------------------------------------------------------------------


def test_iter_video_frames_yields_every_frame(videos: dict[str, Path]) -> None:
    items = list(iter_video_frames(videos[".mp4"], max_side=320))
    assert [i for i, _, _ in items] == list(range(COUNT))
    np.testing.assert_allclose([t for _, t, _ in items], np.arange(COUNT) / FPS, atol=1e-3)
    assert all(f.shape == (180, 320, 3) and f.dtype == np.uint8 for _, _, f in items)
    s = sample_video(videos[".mp4"], 8, max_side=320)
    for j, i in enumerate(s.indices):  # the same pixels as sample_video's
        np.testing.assert_array_equal(items[i][2], s.frames[j])
        assert items[i][1] == pytest.approx(float(s.timestamps[j]), abs=1e-4)


def test_iter_video_frames_can_stop_early(videos: dict[str, Path]) -> None:
    gen = iter_video_frames(videos[".mkv"])
    assert next(gen)[0] == 0
    gen.close()  # closes the container


# --- bad inputs and limits ----------------------------------------------------------------------------------


def test_bad_inputs_raise_video_decode_error(tmp_path: Path) -> None:
    bad = bad_inputs(tmp_path)
    expected = {"empty", "random", "text", "png", "truncated", "truncated_head", "audio_only", "zero_frames"}
    assert expected <= set(bad)
    for name, data in bad.items():
        path = tmp_path / f"bad_{name}.bin"
        path.write_bytes(data)
        for source in (data, path, io.BytesIO(data)):
            with pytest.raises(VideoDecodeError) as info:  # any other type fails the test
                sample_video(source, 4)
            message = str(info.value)
            assert "video" in message and "Errno" not in message and "<none>" not in message, (name, message)
            with pytest.raises(VideoDecodeError):
                probe_video(source)
            with pytest.raises(VideoDecodeError):
                list(iter_video_frames(source))
    assert "audio only" in str(pytest.raises(VideoDecodeError, sample_video, bad["audio_only"]).value)
    assert "no frames" in str(pytest.raises(VideoDecodeError, sample_video, bad["zero_frames"]).value)
    assert "empty" in str(pytest.raises(VideoDecodeError, sample_video, bad["empty"]).value)
    assert "still image" in str(pytest.raises(VideoDecodeError, sample_video, bad["png"]).value)


def test_text_file_with_txt_name_is_refused(tmp_path: Path) -> None:
    """FFmpeg's tty demuxer renders .txt files as video: refused."""
    path = tmp_path / "notes.txt"
    path.write_bytes(bad_inputs(tmp_path)["text"])
    with pytest.raises(VideoDecodeError, match="text"):
        sample_video(path)


def test_playlists_cannot_make_ffmpeg_read_other_files(tmp_path: Path, videos: dict[str, Path]) -> None:
    """An HLS playlist naming a local file: FFmpeg alone would play it; the reader refuses nested opens."""
    segment = tmp_path / "segment.ts"
    with av.open(str(videos[".mp4"])) as src, av.open(str(segment), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\nfile://{segment}\n#EXT-X-ENDLIST\n")
    with av.open(str(playlist)) as c:  # the danger: FFmpeg's own file protocol follows the playlist
        assert sum(1 for _ in c.decode(video=0)) == COUNT
    for source in (playlist, playlist.read_bytes()):
        with pytest.raises(VideoDecodeError):
            sample_video(source, 4)
    s = sample_video(segment, 4)  # MPEG-TS itself is fine (its timestamps don't start at 0)
    assert s.frame_count == COUNT
    np.testing.assert_allclose(s.timestamps, evenly_spaced_indices(COUNT, 4) / FPS, atol=1e-3)


def test_truncated_faststart_keeps_the_decoded_frames(tmp_path: Path) -> None:
    s = sample_video(truncated_faststart(tmp_path), 8)
    assert 1 <= len(s.indices) <= 8 and 1 <= s.frame_count < 50
    assert s.frames.shape[0] == len(s.indices) == len(s.timestamps)
    assert np.all(np.diff(s.indices) > 0) and s.indices[-1] < s.frame_count


def test_errors_are_value_errors() -> None:
    assert issubclass(VideoDecodeError, VideoError) and issubclass(VideoTooLargeError, VideoError)
    assert issubclass(VideoError, ValueError)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (VideoLimits(max_pixels=100_000), "frame size 640x360 exceeds the limit of 100000 pixels"),
        (VideoLimits(max_duration_s=1.5), "duration 2.0 s exceeds the limit of 1.5 s"),
        (VideoLimits(max_frames=20), "more than 20 frames"),
        (VideoLimits(max_bytes=1000), "exceeds the limit of 1000 bytes"),
    ],
)
def test_limits_raise_before_decoding(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch, limits: VideoLimits, message: str
) -> None:
    def no_decoding(*args: object) -> None:
        raise AssertionError("decoding started before the limits were checked")

    monkeypatch.setattr(decode, "_DecodeRun", no_decoding)
    for suffix in (".mp4", ".mkv"):  # mkv: no frame count in the header
        with pytest.raises(VideoTooLargeError, match=message):
            sample_video(videos[suffix], 4, limits=limits)
        if limits.max_frames > 1000:  # iter_video_frames checks what the headers say (not the frame count)
            with pytest.raises(VideoTooLargeError, match=message):
                next(iter_video_frames(videos[suffix], limits=limits))


def test_invalid_arguments(videos: dict[str, Path]) -> None:
    with pytest.raises(ValueError):
        sample_video(videos[".mp4"], 0)
    with pytest.raises(FileNotFoundError):
        sample_video("/nonexistent/video.mp4")
    with pytest.raises(TypeError):
        sample_video(12345)  # type: ignore[arg-type]


def test_module_imports_neither_torch_nor_cv2() -> None:
    code = "import sys, deepfake_core.decode; assert not {'torch', 'cv2'} & set(sys.modules), 'heavy import'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


# --- I420 ---------------------------------------------------------------------------------------------------


def test_i420_frames_of_a_rotated_video_are_turned(tmp_path: Path) -> None:
    from tests.media import face_video

    path = tmp_path / "rotated.mp4"
    face_video(path, width=320, height=180, seconds=0.4, rotation=90)
    [(_, _, first), *_] = list(iter_video_frames(path, pixel_format="yuv420p"))
    [(_, _, rgb), *_] = list(iter_video_frames(path))
    assert rgb.shape[:2] == (320, 180) and first.shape == (320 * 3 // 2, 180)
    import cv2

    assert np.abs(cv2.cvtColor(first, cv2.COLOR_YUV2RGB_I420).astype(np.int16) - rgb).mean() < 2.0


def test_i420_needs_an_even_size(tmp_path: Path) -> None:
    from tests.media import face_video

    path = tmp_path / "odd.mp4"
    face_video(path, width=322, height=182, seconds=0.2)
    with pytest.raises(ValueError, match="even"):
        next(iter_video_frames(path, max_side=321, pixel_format="yuv420p"))


def test_an_animated_gif_is_refused(tmp_path: Path) -> None:
    from PIL import Image

    frames = [Image.new("RGB", (64, 48), (i * 40, 80, 120)) for i in range(4)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(VideoDecodeError, match="animated image"):
        sample_video(path.read_bytes(), 4)
