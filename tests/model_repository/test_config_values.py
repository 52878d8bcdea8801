"""Each value that ``deepfake_core.constants`` owns has one source: the model configurations (and the gateway's
defaults, and the tensor table's parameter column) that repeat one are held equal to it here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deepfake_core import constants as C
from deepfake_core.decode import VideoLimits
from deepfake_core.mtcnn_cascade import DetectorParams
from gateway.core.settings import Settings

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
_PARAMETER = re.compile(r'parameters \{ key: "(\w+)" value \{ string_value: "([^"]*)" \} \}')

# config.pbtxt parameter -> the constant it repeats
OWNED = {
    "video_decode": {
        "max_pixels": C.VIDEO_MAX_PIXELS,
        "max_duration_s": C.VIDEO_MAX_DURATION_S,
        "analysis_max_side": C.ANALYSIS_MAX_SIDE,
        "decode_threads": C.VERDICT_DECODE_THREADS,
    },
    "face_detector": {
        "detect_max_side": C.MTCNN_DETECT_MAX_SIDE,
        "min_face_fraction": C.MTCNN_MIN_FACE_FRACTION,
        "min_face_px": C.MTCNN_MIN_FACE_PX,
        "rnet_per_frame": C.MTCNN_RNET_PER_FRAME,
        "onet_per_frame": C.MTCNN_ONET_PER_FRAME,
        "key_stride": C.MTCNN_KEY_STRIDE,
        "max_faces": C.MAX_FACES,
    },
}


def parameters(model: str) -> dict[str, str]:
    return dict(_PARAMETER.findall((REPOSITORY / model / "config.pbtxt").read_text()))


@pytest.mark.parametrize("model", sorted(OWNED))
def test_model_configs_repeat_the_constants_exactly(model: str) -> None:
    found = parameters(model)
    for key, value in OWNED[model].items():
        assert key in found, f"{model}/config.pbtxt lost its {key} parameter (held equal to the constant here)"
        assert float(found[key]) == pytest.approx(float(value)), f"{model}/config.pbtxt {key}"


def test_the_tensor_table_shows_the_configured_values() -> None:
    rows = re.findall(r"^\| (\w+) \| (\w+) \| ([\d.]+) \|", (REPOSITORY / "README.md").read_text(), re.M)
    for model, key, value in rows:
        if key in OWNED.get(model, {}):
            assert float(value) == pytest.approx(float(OWNED[model][key])), f"model_repository/README.md {model} {key}"


def test_video_limits_have_one_source() -> None:
    """The product's limits: the decoder's defaults, the gateway's defaults and Triton's video_decode agree."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    limits = VideoLimits()
    assert limits.max_pixels == settings.max_pixels == C.VIDEO_MAX_PIXELS
    assert limits.max_duration_s == settings.max_duration_s == C.VIDEO_MAX_DURATION_S
    assert limits.max_frames == settings.max_frames == C.VIDEO_MAX_FRAMES


def test_mtcnn_defaults_are_the_constants() -> None:
    params = DetectorParams()
    assert params.detect_max_side == C.MTCNN_DETECT_MAX_SIDE and params.key_stride == C.MTCNN_KEY_STRIDE
    assert params.rnet_per_frame == C.MTCNN_RNET_PER_FRAME and params.onet_per_frame == C.MTCNN_ONET_PER_FRAME
    assert params.min_face_fraction == C.MTCNN_MIN_FACE_FRACTION and params.min_face_px == C.MTCNN_MIN_FACE_PX
