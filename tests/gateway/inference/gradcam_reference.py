"""The reference Grad-CAM path, for the tests only: CAMs from the crops through the whole twin (CNN included).

The gateway computes its CAMs from Triton's feature maps through the twin's head (``GradCamEngine``); this path
runs the crops through the full twin with pytorch-grad-cam and checks that both explain the same thing.

The classifier takes ``[B, T, 3, H, W]`` but pytorch-grad-cam reads a 5D input as a 3D volume, so a wrapper shows
it the frames as a batch ``[T, 3, H, W]`` (the approach of pytorch-grad-cam issue #520). Speed (2-core CPU, T=32,
seeded twin): a plain full backward pass takes ~9.9 s; with every parameter frozen but the target layer's (as the
engine does), ~1.9 s, identical maps; channels-last on CPU ~20% faster. ``precision="bf16"`` adds bfloat16
autocast: about 2x faster again on CPUs with native bf16 (AVX512-BF16/AMX), maps within a few percent of fp32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from deepfake_core.classifier import Classifier
from deepfake_core.preprocess import normalize_crops
from gateway.services.inference.gradcam import GradCamEngine

from pytorch_grad_cam import GradCAM  # isort: skip  (after gradcam: it installs the torchvision stand-in)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # isort: skip

Precision = Literal["fp32", "bf16"]


@dataclass
class CamTiming:
    """Seconds spent in one ``compute``: preprocessing, Grad-CAM (forward + backward + maps), total."""

    preprocess: float = 0.0
    cam: float = 0.0
    total: float = 0.0
    frames: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class _FramesAsBatch(nn.Module):
    """Shows the twin to pytorch-grad-cam as a per-frame model: ``[T, 3, H, W] -> [T, 1]`` (video logit repeated).

    ``mask`` (float ``[1, T]``) must be set before each call; the engine's lock makes that safe.
    """

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model
        self.mask: torch.Tensor | None = None

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.mask is None or self.mask.shape != (1, frames.shape[0]):
            raise RuntimeError("the frame mask must be set to [1, T] before the wrapper is called")
        video_logit = self.model(frames.unsqueeze(0), self.mask).video_logit  # [1]
        return video_logit.reshape(1, 1).expand(frames.shape[0], 1)


class ReferenceGradCam(GradCamEngine):
    """``GradCamEngine`` plus ``compute``: CAMs from the crops through the whole twin. ``precision``: "fp32"
    (default) or "bf16" (autocast)."""

    def __init__(
        self, model: Classifier, device: str | torch.device | None = None, precision: Precision = "fp32"
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        super().__init__(model, device)
        self.precision: Precision = precision
        self._wrapper = _FramesAsBatch(self.model).eval()

    def hooks_left(self) -> int:
        """Forward hooks (plus backward hooks) currently registered on the target layer; 0 outside ``compute``."""
        layer = self.target_layer
        return len(layer._forward_hooks) + len(layer._forward_pre_hooks) + len(layer._backward_hooks)

    def compute(self, crops: np.ndarray, present: np.ndarray) -> np.ndarray:
        """CAMs float32 ``[T, H, W]`` in [0, 1] for uint8 crops ``[T, H, W, 3]`` (the crops the classifier saw).

        ``present`` (bool ``[T]``) is the face mask the classifier used; frames without a face get all-zero maps.
        Each map is scaled to [0, 1] on its own (pytorch-grad-cam's per-image min-max scaling).
        """
        return self.compute_timed(crops, present)[0]

    def compute_timed(self, crops: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, CamTiming]:
        """``compute`` plus where the time went."""
        start = time.perf_counter()
        crops = np.asarray(crops)
        mask = np.asarray(present, dtype=bool).reshape(-1)
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"expected uint8 crops [T, H, W, 3], got {crops.dtype} {crops.shape}")
        if len(mask) != len(crops):
            raise ValueError(f"present has {len(mask)} entries for {len(crops)} crops")
        frames, height, width = crops.shape[:3]
        cams = np.zeros((frames, height, width), np.float32)
        timing = CamTiming(frames=frames)
        if not mask.any():
            timing.total = time.perf_counter() - start
            return cams, timing

        inputs = torch.from_numpy(normalize_crops(crops)).to(self.device, memory_format=self._memory_format)
        if not any(True for _ in self.target_layer.parameters()):
            inputs.requires_grad_(True)  # a parameter-free target (a ViT's token maps) needs a graph down to it
        mask_tensor = torch.from_numpy(mask.astype(np.float32))[None].to(self.device)
        timing.preprocess = time.perf_counter() - start
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with self._lock, torch.enable_grad(), autocast:
            self._wrapper.mask = mask_tensor
            try:
                with GradCAM(
                    model=self._wrapper, target_layers=[self.target_layer], reshape_transform=_as_float32
                ) as cam:
                    maps = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(0)] * frames)
            finally:
                self._wrapper.mask = None
                self.model.zero_grad(set_to_none=True)
        cams[mask] = np.nan_to_num(maps[mask], nan=0.0)
        np.clip(cams, 0.0, 1.0, out=cams)
        timing.cam = time.perf_counter() - start - timing.preprocess
        timing.total = time.perf_counter() - start
        return cams, timing


def _as_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Activations and gradients as float32 (numpy, where pytorch-grad-cam takes them, has no bfloat16)."""
    return tensor.float()


def cam_peak(cam: np.ndarray) -> tuple[int, int]:
    """Pixel ``(x, y)`` of the maximum of a 2D map (lightly smoothed, so one hot pixel does not decide)."""
    if cam.ndim != 2:
        raise ValueError(f"expected a 2D map, got shape {cam.shape}")
    smooth: np.ndarray = cam.astype(np.float32)
    k = max(1, min(cam.shape) // 16) | 1
    if k > 1:
        import cv2

        smooth = cv2.blur(smooth, (k, k))
    y, x = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    return int(x), int(y)
