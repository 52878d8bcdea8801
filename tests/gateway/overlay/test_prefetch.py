"""The overlay's read-ahead decoder: every frame once, in order, equal to a plain decode, within its memory bound;
and an overlay rendered from it equal to one rendered by decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepfake_core.decode import VideoError, iter_video_frames, probe_video
from gateway.services.overlay.prefetch import FramePrefetch
from gateway.services.overlay.render import decode_format, render_overlay
from tests.gateway.overlay.test_render import ENCODING, FPS, FRAMES, HEIGHT, WIDTH, _frames, _result
from tests.media import faceless_video

FRAME_BYTES = WIDTH * HEIGHT * 3 // 2  # I420 at the source size (the overlay keeps a 360p video as it is)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prefetch") / "clip.mp4"
    faceless_video(path, width=WIDTH, height=HEIGHT, fps=FPS, seconds=FRAMES / FPS)
    return path


def _plain(path: Path) -> list[tuple[int, float, np.ndarray]]:
    longer, pixel_format = decode_format(probe_video(path), 720)
    return [(i, t, a.copy()) for i, t, a in iter_video_frames(path, longer, pixel_format=pixel_format)]


@pytest.mark.parametrize("budget_frames", [1_000, 7, 0])
def test_every_frame_once_in_order_equal_to_a_plain_decode(video: Path, budget_frames: int) -> None:
    longer, pixel_format = decode_format(probe_video(video), 720)
    assert pixel_format == "yuv420p"
    with FramePrefetch(video, longer, pixel_format, max_bytes=budget_frames * FRAME_BYTES) as prefetch:
        got = list(prefetch.frames())
    want = _plain(video)
    assert [i for i, _, _ in got] == [i for i, _, _ in want] == list(range(FRAMES))
    assert [t for _, t, _ in got] == [t for _, t, _ in want]
    for (_, _, a), (_, _, b) in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_read_ahead_stops_at_its_memory_bound(video: Path) -> None:
    longer, pixel_format = decode_format(probe_video(video), 720)
    with FramePrefetch(video, longer, pixel_format, max_bytes=5 * FRAME_BYTES) as prefetch:
        prefetch._thread.join(timeout=30)
        assert not prefetch._thread.is_alive()
        assert prefetch.frames_held == 5
        assert prefetch.held_bytes == 5 * FRAME_BYTES
        assert len(list(prefetch.frames())) == FRAMES  # the rest comes from the same decoder


def test_frames_are_taken_once_and_an_unused_read_ahead_closes(video: Path) -> None:
    longer, pixel_format = decode_format(probe_video(video), 720)
    prefetch = FramePrefetch(video, longer, pixel_format, max_bytes=10**9)
    frames = prefetch.frames()
    next(frames)
    with pytest.raises(RuntimeError, match="already taken"):
        next(prefetch.frames())
    prefetch.close()
    assert prefetch.frames_held == 0
    unused = FramePrefetch(video, longer, pixel_format, max_bytes=10**9)
    unused.close()  # before or while it reads: no thread left behind
    assert not unused._thread.is_alive()


def test_a_decode_error_reaches_the_render(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4096)
    with FramePrefetch(bad, 720, "yuv420p", max_bytes=10**9) as prefetch, pytest.raises(VideoError):
        list(prefetch.frames())


def test_an_overlay_from_prefetched_frames_equals_one_decoded_while_rendering(video: Path, tmp_path: Path) -> None:
    boxes = np.tile(np.array([[200.0, 100.0, 320.0, 240.0]], np.float32), (FRAMES, 1))
    result = _result(boxes, FRAMES, FPS, WIDTH, HEIGHT)
    plain, ahead = tmp_path / "plain.mp4", tmp_path / "ahead.mp4"
    info = probe_video(video)
    render_overlay(video, plain, result, None, label="FAKE", encoding=ENCODING, info=info)
    longer, pixel_format = decode_format(info, 720)
    with FramePrefetch(video, longer, pixel_format, max_bytes=9 * FRAME_BYTES) as prefetch:
        stats = render_overlay(
            video,
            ahead,
            result,
            None,
            label="FAKE",
            encoding=ENCODING,
            info=info,
            frames=prefetch.frames(),
        )
    assert stats.frames == FRAMES
    a, b = _frames(plain), _frames(ahead)
    assert len(a) == len(b) == FRAMES
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
