"""The overlay video, rendered from generated face videos with known boxes and a synthetic Grad-CAM map."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from deepfake_core.constants import CROP_SIZE
from deepfake_core.decode import VideoError, evenly_spaced_indices, iter_video_frames
from deepfake_core.ensemble_contract import DetectorResult
from gateway.core.settings import Settings
from gateway.services.overlay.render import (
    OverlayEncoding,
    _Overlay,
    measure_floor,
    output_size,
    render_overlay,
    score_colour,
)
from tests.media import face_video, faceless_video

WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 25, 2.0
ENCODING = OverlayEncoding.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]  # Settings' defaults
FRAMES = round(FPS * SECONDS)
T = 8
BANNER_ROWS = 40  # the banner is ~22 px at 360p; leave a margin
FAR = 32  # px around the face box (interpolation error, box outline, 16 px codec blocks) not counted as "far"


def _blob(size: int = CROP_SIZE, sigma: float = 30.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    return np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2 * sigma**2)).astype(np.float32)


def _result(
    boxes: np.ndarray, frame_count: int, fps: float, width: int, height: int, face: bool = True
) -> DetectorResult:
    idx = evenly_spaced_indices(frame_count, T)
    n = len(idx)
    has_face = np.full(n, face)
    return DetectorResult(
        prob_fake=0.83 if face else 0.5,
        video_logit=1.6 if face else 0.0,
        frame_scores=np.where(has_face, np.linspace(0.1, 0.95, n), 0.0).astype(np.float32),
        face_found=face,
        has_face=has_face,
        face_boxes=(boxes[idx] if face else np.zeros((n, 4))).astype(np.float32),
        landmarks=np.zeros((n, 5, 2), np.float32),
        face_scores=has_face.astype(np.float32),
        frame_indices=idx,
        timestamps=(idx / fps).astype(np.float32),
        fps=fps,
        frame_count=frame_count,
        width=width,
        height=height,
    )


def _frames(path: Path) -> list[np.ndarray]:
    return [rgb.copy() for _, _, rgb in iter_video_frames(path, 10_000)]


def _box_mask(shape: tuple[int, ...], box: np.ndarray, grow: float) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    x1, y1, x2, y2 = box
    mask[max(0, int(y1 - grow)) : int(np.ceil(y2 + grow)), max(0, int(x1 - grow)) : int(np.ceil(x2 + grow))] = True
    return mask


def _inner(box: np.ndarray, shrink: float = 0.25) -> np.ndarray:
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * shrink, (y2 - y1) * shrink
    return np.array([x1 + dx, y1 + dy, x2 - dx, y2 - dy])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("render") / "face.mp4"
    boxes = np.asarray(face_video(path, width=WIDTH, height=HEIGHT, fps=FPS, seconds=SECONDS), np.float64)
    return path, boxes, _frames(path)


def _drawn_boxes(result: DetectorResult, count: int) -> list[np.ndarray | None]:
    """The face box the renderer uses for each frame (carried/interpolated; checked in test_box_carrying...)."""
    overlay = _Overlay(result, None, "REAL", 1.0, 1.0, result.width, result.height)
    return [overlay.state(i)[1] for i in range(count)]


def _diffs(
    source_frames: list[np.ndarray], out: Path, result: DetectorResult
) -> tuple[list[float], list[float], list[float]]:
    """Per frame: mean |out - in| inside the drawn face box's inner half, far from it, and in the banner."""
    drawn = _drawn_boxes(result, len(source_frames))
    for k, i in enumerate(result.frame_indices):  # on analysed frames the drawn box is the detected one
        assert drawn[int(i)] is not None and np.allclose(drawn[int(i)], result.face_boxes[k])  # type: ignore[arg-type]
    inside, far, banner = [], [], []
    for i, got in enumerate(_frames(out)):
        want, box = source_frames[i], drawn[i]
        assert box is not None
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16)).mean(axis=2)
        inner = _box_mask(diff.shape, _inner(box), 0)
        away = ~_box_mask(diff.shape, box, FAR)
        away[:BANNER_ROWS] = False
        inside.append(float(diff[inner].mean()))
        far.append(float(diff[away].mean()))
        banner.append(float(diff[:18].mean()))
    return inside, far, banner


def _probe(path: Path) -> tuple[str, str | None, int, float, int, int]:
    """(codec, pix_fmt, decoded frames, average rate, width, height) read with PyAV directly."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        ctx = stream.codec_context
        rate = float(stream.average_rate or 0)
        return ctx.name, ctx.pix_fmt, frames, rate, ctx.width, ctx.height


def _top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    names, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        names.append(data[pos + 4 : pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return names


def test_overlay_video_format_and_content(clip: tuple[Path, np.ndarray, list[np.ndarray]], tmp_path: Path) -> None:
    source, boxes, source_frames = clip
    result = _result(boxes, FRAMES, FPS, WIDTH, HEIGHT)
    cams = np.repeat(_blob()[None], T, axis=0)
    out = tmp_path / "overlay.mp4"
    stats = render_overlay(source, out, result, cams, label="FAKE", encoding=ENCODING)

    assert (stats.frames, stats.fps, stats.width, stats.height) == (FRAMES, FPS, WIDTH, HEIGHT)
    assert _probe(out) == ("h264", "yuv420p", FRAMES, FPS, WIDTH, HEIGHT)
    names = _top_level_boxes(out)
    assert names.index("moov") < names.index("mdat"), names  # faststart

    inside, far, banner = _diffs(source_frames, out, result)
    assert min(inside) > 25, inside  # heatmap blended at alpha 0.45 over the face (seen: >= 39)
    assert max(far) < 3, far  # the rest is only re-encoded (seen: <= 2.1, like a plain re-encode)
    assert min(banner) > 30, banner


def test_heatmap_off_keeps_the_face_and_draws_box_and_banner(
    clip: tuple[Path, np.ndarray, list[np.ndarray]], tmp_path: Path
) -> None:
    source, boxes, source_frames = clip
    out = tmp_path / "no_heatmap.mp4"
    result = _result(boxes, FRAMES, FPS, WIDTH, HEIGHT)
    stats = render_overlay(source, out, result, None, label="REAL", encoding=ENCODING)
    assert stats.frames == FRAMES
    inside, far, banner = _diffs(source_frames, out, result)
    assert max(inside) < 6, inside  # no heatmap: the face is only re-encoded (seen: <= 3.6; detailed texture)
    assert max(far) < 3, far
    assert min(banner) > 30, banner
    # The box outline is drawn: the ring around the GT box changed in an analysed frame.
    k = int(evenly_spaced_indices(FRAMES, T)[3])
    got, want = _frames(out)[k], source_frames[k]
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16)).mean(axis=2)
    ring = _box_mask(diff.shape, boxes[k], 3) & ~_box_mask(diff.shape, _inner(boxes[k], 0.05), 0)
    assert diff[ring].mean() > 20


def test_no_face_renders_the_banner_only(tmp_path: Path) -> None:
    source = tmp_path / "faceless.mp4"
    count = faceless_video(source, width=WIDTH, height=HEIGHT, fps=FPS, seconds=1.0)
    result = _result(np.zeros((count, 4)), count, FPS, WIDTH, HEIGHT, face=False)
    cams = np.zeros((T, CROP_SIZE, CROP_SIZE), np.float32)
    out = tmp_path / "no_face.mp4"
    stats = render_overlay(source, out, result, cams, label="NO_FACE", encoding=ENCODING)
    assert stats.frames == count
    for got, want in zip(_frames(out), _frames(source), strict=True):
        diff = np.abs(got.astype(np.int16) - want.astype(np.int16)).mean(axis=2)
        assert diff[BANNER_ROWS:].mean() < 3
        assert diff[:18].mean() > 30


def test_max_side_limits_the_shorter_side(tmp_path: Path) -> None:
    source = tmp_path / "hd.mp4"
    boxes = np.asarray(face_video(source, width=1280, height=720, fps=FPS, seconds=0.4), np.float64)
    result = _result(boxes, len(boxes), FPS, 1280, 720)
    cams = np.repeat(_blob()[None], T, axis=0)[: len(result.frame_indices)]
    out = tmp_path / "small.mp4"
    stats = render_overlay(source, out, result, cams, label="FAKE", encoding=replace(ENCODING, max_side=360))
    assert (stats.width, stats.height, stats.frames) == (640, 360, len(boxes))
    assert _probe(out)[2:] == (len(boxes), FPS, 640, 360)
    # Boxes are scaled with the frame: the heatmap lands on the face at half size.
    got = _frames(out)[int(result.frame_indices[0])]
    want = _frames(source)[int(result.frame_indices[0])][::2, ::2]
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16)).mean(axis=2)
    assert diff[_box_mask(diff.shape, _inner(boxes[int(result.frame_indices[0])] / 2), 0)].mean() > 25


def test_output_size_rule() -> None:
    assert output_size(1920, 1080, 720) == (1280, 720, 1280)
    assert output_size(1080, 1920, 720) == (720, 1280, 1280)
    assert output_size(1280, 720, 720) == (1280, 720, 1280)
    assert output_size(640, 360, 720) == (640, 360, 640)  # never upscaled


def test_box_carrying_and_interpolation() -> None:
    boxes = np.zeros((4, 4), np.float32)
    boxes[0] = (0, 0, 10, 10)
    boxes[1] = (10, 20, 30, 40)
    boxes[3] = (50, 50, 60, 60)
    result = DetectorResult(
        prob_fake=0.7,
        video_logit=0.8,
        frame_scores=np.array([0.2, 0.4, 0.0, 0.9], np.float32),
        face_found=True,
        has_face=np.array([True, True, False, True]),
        face_boxes=boxes,
        landmarks=np.zeros((4, 5, 2), np.float32),
        face_scores=np.ones(4, np.float32),
        frame_indices=np.array([5, 15, 25, 35]),
        timestamps=np.zeros(4, np.float32),
        fps=25.0,
        frame_count=40,
        width=100,
        height=100,
    )
    overlay = _Overlay(result, None, "FAKE", 1.0, 1.0, 100, 100)
    slot, box = overlay.state(0)  # before the first analysed frame: its box, carried
    assert slot == 0 and box is not None and np.allclose(box, boxes[0])
    slot, box = overlay.state(12)  # between two faces: interpolated, nearest frame's slot
    assert slot == 1 and box is not None and np.allclose(box, 0.3 * boxes[0] + 0.7 * boxes[1])
    slot, box = overlay.state(22)  # nearest analysed frame has no face: no box
    assert slot == 2 and box is None
    slot, box = overlay.state(32)  # next to a face whose neighbour has none: carried, not interpolated
    assert slot == 3 and box is not None and np.allclose(box, boxes[3])
    assert overlay.state(39)[0] == 3


def test_score_colours() -> None:
    assert score_colour(0.0, 0.5) == (0, 210, 40)  # green
    assert score_colour(0.5, 0.5) == (255, 210, 40)  # yellow at the threshold
    assert score_colour(1.0, 0.5) == (255, 0, 40)  # red


def test_floor_and_bad_source(clip: tuple[Path, np.ndarray, list[np.ndarray]], tmp_path: Path) -> None:
    source, boxes, _ = clip
    floor = tmp_path / "floor.mp4"
    assert measure_floor(source, floor, ENCODING) > 0
    assert _probe(floor) == ("h264", "yuv420p", FRAMES, FPS, WIDTH, HEIGHT)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    out = tmp_path / "never.mp4"
    with pytest.raises(VideoError):
        render_overlay(bad, out, _result(boxes, FRAMES, FPS, WIDTH, HEIGHT), None, label="REAL", encoding=ENCODING)
    assert not out.exists()


def test_drawing_on_i420_matches_drawing_on_rgb(clip: tuple[Path, np.ndarray, list[np.ndarray]]) -> None:
    """The I420 path converts only the box and banner regions: same picture as drawing on the RGB frame."""
    import cv2

    from deepfake_core.decode import i420_planes

    path, boxes, frames = clip
    result = _result(boxes, FRAMES, FPS, WIDTH, HEIGHT)
    cams = np.stack([_blob()] * T)
    k = int(result.frame_indices[3])
    yuvs = [yuv for i, _, yuv in iter_video_frames(path, 10_000, pixel_format="yuv420p") if i == k]
    yuv = yuvs[0]
    rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
    untouched = yuv.copy()
    _Overlay(result, cams, "FAKE", 1.0, 1.0, WIDTH, HEIGHT).draw(rgb, k)
    _Overlay(result, cams, "FAKE", 1.0, 1.0, WIDTH, HEIGHT).draw_i420(yuv, k)
    # What the RGB path hands the encoder is that frame subsampled to yuv420p: compare with that.
    encoded_rgb = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420)
    diff = np.abs(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420).astype(np.int16) - encoded_rgb.astype(np.int16))
    print(f"I420 vs RGB drawing: mean {diff.mean():.3f}, 99.9th percentile {np.percentile(diff, 99.9)}")
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 8
    # Pixels away from the box and the banner are the decoder's, bit for bit.
    away = ~_box_mask((HEIGHT, WIDTH), boxes[k], 8)
    away[:BANNER_ROWS] = False
    y_in, y_out = i420_planes(untouched, WIDTH, HEIGHT)[0], i420_planes(yuv, WIDTH, HEIGHT)[0]
    assert np.array_equal(y_in[away], y_out[away])
    assert not np.array_equal(y_in, y_out)


def test_an_odd_sized_video_takes_the_rgb_path(tmp_path: Path) -> None:
    src = tmp_path / "odd.mp4"
    boxes = np.asarray(face_video(src, width=322, height=182, fps=FPS, seconds=1.0), np.float64)
    result = _result(boxes, round(FPS), FPS, 322, 182)
    stats = render_overlay(src, tmp_path / "out.mp4", result, None, label="REAL", encoding=ENCODING)
    assert (stats.width, stats.height) == (322, 182) and stats.frames == round(FPS)


def test_every_face_gets_its_box_in_its_own_colour_and_its_own_heatmap() -> None:
    """Two analysed faces (issue 14): each box drawn in the colour of its own score, each with its own Grad-CAM."""
    t, size = 3, 200
    boxes = np.zeros((2, t, 4), np.float32)
    boxes[0] = (20, 60, 80, 140)  # the real face: low scores
    boxes[1] = (120, 60, 180, 140)  # the deciding face: high scores
    scores = np.array([[0.1] * t, [0.95] * t], np.float32)
    result = DetectorResult(
        prob_fake=0.9,
        frame_scores=scores[1],
        face_found=True,
        has_face=np.ones(t, bool),
        face_boxes=boxes[1],
        frame_indices=np.array([0, 5, 10]),
        timestamps=np.array([0.0, 0.2, 0.4], np.float32),
        fps=25.0,
        frame_count=11,
        width=size,
        height=size,
        track_prob_fake=np.array([0.1, 0.9], np.float32),
        track_boxes=boxes,
        track_has_face=np.ones((2, t), bool),
        track_frame_scores=scores,
        deciding_face=1,
    )
    cams = np.zeros((2, t, CROP_SIZE, CROP_SIZE), np.float32)
    cams[0] = _blob()  # only the first face's map is hot
    blank = np.full((size, size, 3), 128, np.uint8)
    plain = blank.copy()
    _Overlay(result, None, "FAKE", 1.0, 1.0, size, size).draw(plain, 5)
    for box, score in zip(boxes[:, 1], scores[:, 1], strict=True):
        x1, y1, x2, y2 = (int(v) for v in box)
        outline = plain[y1, (x1 + x2) // 2]
        assert tuple(int(v) for v in outline) == score_colour(float(score), 0.5)  # its own colour
        assert (plain[y1 + 10 : y2 - 10, x1 + 10 : x2 - 10] == 128).all()  # no heatmap without cams
    heat = blank.copy()
    _Overlay(result, cams, "FAKE", 1.0, 1.0, size, size).draw(heat, 5)
    changed = np.abs(heat.astype(int) - plain.astype(int)).sum(axis=2) > 0
    assert changed[80:120, 40:60].mean() > 0.9  # the first face's own (hot) map
    assert (
        np.abs(heat[80:120, 140:160].astype(int) - 128).max() > 0
    )  # a cold map is drawn too (blue), elsewhere nothing
    assert not changed[150:, :].any()
