"""The frame encoder (deepfake_core.efficientnet): the Lite0 variant's shapes and input mapping."""

from __future__ import annotations

import numpy as np
import torch

from deepfake_core.classifier import DEFAULT_ARCH, build_classifier
from deepfake_core.constants import CROP_SIZE
from deepfake_core.efficientnet import BACKBONES
from deepfake_core.preprocess import normalize_crops


def test_backbones_are_the_temporal_archs_choices() -> None:
    assert DEFAULT_ARCH["backbone"] in BACKBONES and "effnet_lite0" in BACKBONES


def test_lite0_backbone_shapes_and_input_mapping() -> None:
    """EfficientNet-Lite0: 1280 maps of 7x7 per 224 px frame, no squeeze-excitation, and served pixels mapped to
    Lite's (pixel - 127) / 128 range."""
    model = build_classifier({"backbone": "effnet_lite0"}).eval()
    assert DEFAULT_ARCH["backbone"] == "effnet_b0" and model.arch["backbone"] == "effnet_lite0"
    assert not any(isinstance(m, torch.nn.SiLU) for m in model.frame_encoder.modules())
    faces = torch.from_numpy(normalize_crops(np.full((2, CROP_SIZE, CROP_SIZE, 3), 127, np.uint8)))[None]
    with torch.no_grad():
        assert model.feature_maps(faces).shape == (1, 2, 1280, 7, 7)
    enc = model.frame_encoder
    mapped = faces[0] * enc.input_scale + enc.input_shift
    torch.testing.assert_close(mapped, torch.zeros_like(mapped), atol=1e-5, rtol=0)
    white = torch.from_numpy(normalize_crops(np.full((1, 8, 8, 3), 255, np.uint8)))
    white = white * enc.input_scale + enc.input_shift
    torch.testing.assert_close(white, torch.full_like(white, 1.0), atol=1e-5, rtol=0)
