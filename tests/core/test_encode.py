"""deepfake_core.encode: the H.264 writer (RGB and I420 frames), read back with the decoder."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from deepfake_core.decode import i420_planes, iter_video_frames, pack_i420, sample_video
from deepfake_core.encode import H264Writer
from tests.media import face_frames, face_video

FPS = 25
SECONDS = 2.0
W, H = 640, 360


@pytest.fixture(scope="module")
def originals() -> list[np.ndarray]:
    """The frames the test video was encoded from."""
    return [frame for frame, _ in face_frames(W, H, FPS, SECONDS)]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("encode-media") / "face.mp4"
    face_video(path, width=W, height=H, fps=FPS, seconds=SECONDS)
    return path


@pytest.mark.parametrize(
    ("width", "height", "fps", "preset"),
    [(320, 180, 25.0, "ultrafast"), (321, 181, 30000 / 1001, "ultrafast"), (320, 180, 24.0, "veryfast")],
)
def test_h264_writer(
    tmp_path: Path, originals: list[np.ndarray], width: int, height: int, fps: float, preset: str
) -> None:
    """Decodes as H.264 yuv420p, same frame count and rate, faststart; veryfast has B-frames."""
    path = tmp_path / "out.mp4"
    frames = [cv2.resize(o, (width, height), interpolation=cv2.INTER_AREA) for o in originals[:37]]
    with H264Writer(path, width, height, fps, preset=preset, crf=23) as writer:
        for f in frames:
            writer.write(f)
    assert writer.frames_written == 37
    assert (writer.width, writer.height) == (width + width % 2, height + height % 2)  # padded to even
    data = path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat"), "moov must come before mdat (faststart)"
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (writer.width, writer.height)
        assert stream.average_rate == Fraction(fps).limit_denominator(1001 * 1000)
        assert stream.frames == 37
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    assert len(decoded) == 37
    for f, d in zip(frames, decoded, strict=True):
        assert np.abs(d[:height, :width].astype(np.int16) - f).mean() < 6  # crf 23 lossy, same picture
        if width % 2:
            np.testing.assert_allclose(d[:height, -1].astype(float), d[:height, -2].astype(float), atol=25)
    s = sample_video(path, 8, max_side=max(writer.width, writer.height))  # no scaling
    assert s.frame_count == 37 and s.fps == pytest.approx(fps)
    np.testing.assert_allclose(s.timestamps, s.indices / fps, atol=1e-3)
    for j, i in enumerate(s.indices):  # the frame at each index is the frame written there
        assert np.abs(s.frames[j, :height, :width].astype(np.int16) - frames[i]).mean() < 6


def test_h264_writer_rejects_wrong_frames_and_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "bad.mp4"
    with pytest.raises(ValueError, match="shape"), H264Writer(path, 64, 48, 25, preset="ultrafast", crf=23) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
        writer.write(np.zeros((40, 64, 3), np.uint8))
    assert not path.exists()  # partial file removed


def test_i420_frames_are_the_rgb_frames_without_conversion(video: Path, tmp_path: Path) -> None:
    rgb = [f for _, _, f in iter_video_frames(video, max_side=320)]
    yuv = [f for _, _, f in iter_video_frames(video, max_side=320, pixel_format="yuv420p")]
    assert len(rgb) == len(yuv)
    h, w = rgb[0].shape[:2]
    assert yuv[0].shape == (h * 3 // 2, w) and yuv[0].dtype == np.uint8
    converted = cv2.cvtColor(yuv[0], cv2.COLOR_YUV2RGB_I420).astype(np.int16)
    assert np.abs(converted - rgb[0]).mean() < 2.0  # OpenCV's BT.601 vs FFmpeg's swscale
    planes = i420_planes(yuv[0], w, h)
    assert [p.shape for p in planes] == [(h, w), (h // 2, w // 2), (h // 2, w // 2)]
    assert np.array_equal(pack_i420(*planes), yuv[0])
    out = tmp_path / "i420.mp4"
    with H264Writer(out, w, h, 25, preset="ultrafast", crf=23) as writer:
        for frame in yuv:
            writer.write_i420(frame)
    back = [f for _, _, f in iter_video_frames(out)]
    assert len(back) == len(rgb) and np.abs(back[0].astype(np.int16) - rgb[0]).mean() < 4.0


def test_module_imports_neither_torch_nor_cv2() -> None:
    code = "import sys, deepfake_core.encode; assert not {'torch', 'cv2'} & set(sys.modules), 'heavy import'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
