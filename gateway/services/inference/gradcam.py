"""Grad-CAM of the video verdict on the PyTorch twin: one map per analysed frame, from one forward/backward.

The classifier takes ``[B, T, 3, H, W]`` but pytorch-grad-cam reads a 5D input as a 3D volume, so a wrapper shows
it the frames as a batch ``[T, 3, H, W]`` (the approach of pytorch-grad-cam issue #520): the wrapper puts the
frames back into one video ``[1, T, 3, H, W]`` with the face mask, runs the twin and returns the video's fake
logit repeated ``[T, 1]``. The target layer is the per-frame CNN's last feature map
(``TemporalClassifier.gradcam_target_layer()``), which therefore has one activation map per frame, and the
gradient of the video logit with respect to each frame's map gives that frame's CAM.

The served model also outputs those feature maps (``FEATURE_MAPS``, float16): ``compute_from_maps`` runs Grad-CAM
on them through the twin's head alone (pooling, temporal model, video head), so the CNN is not run twice and the
maps explain exactly the activations Triton computed. Measured: ~0.05 s for T=32 on the 2-core CPU, against
~1.9 s for ``compute`` (crops through the whole twin), which remains for callers without the maps.

Speed of ``compute`` (measured on the 2-core CPU, T=32, seeded twin): a plain full backward pass takes ~9.9 s.
The engine freezes every parameter of the twin except the target layer's, so autograd keeps no graph for the CNN
below the target layer and the backward pass stops there (the CAM needs nothing deeper): ~1.9 s, identical maps. On CPU
the twin also runs channels-last (identical maps, ~20% faster). ``precision="bf16"`` adds bfloat16 autocast:
about 2x faster again on CPUs with native bf16 (AVX512-BF16/AMX), maps within a few percent of fp32 (per-frame
correlation >= 0.95 measured); fp32 is the default because it explains the served model's own numerics.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from deepfake_core.classifier import TemporalClassifier
from deepfake_core.preprocess import normalize_crops
from gateway.services.inference.torchvision_compat import ensure_torchvision

ensure_torchvision()  # before pytorch_grad_cam: it imports torchvision at package import

from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

__all__ = ["CamTiming", "GradCamEngine", "Precision", "cam_peak", "default_device"]

Precision = Literal["fp32", "bf16"]


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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

    def __init__(self, model: TemporalClassifier) -> None:
        super().__init__()
        self.model = model
        self.mask: torch.Tensor | None = None

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.mask is None or self.mask.shape != (1, frames.shape[0]):
            raise RuntimeError("the frame mask must be set to [1, T] before the wrapper is called")
        video_logit = self.model(frames.unsqueeze(0), self.mask).video_logit  # [1]
        return video_logit.reshape(1, 1).expand(frames.shape[0], 1)


class _HeadOnMaps(nn.Module):
    """The twin's head as a per-frame model over feature maps: ``[T, C, h, w] -> [T, 1]`` (video logit repeated).

    ``self.maps`` (an identity) is the Grad-CAM target layer: its activations are the feature maps themselves.
    """

    def __init__(self, model: TemporalClassifier) -> None:
        super().__init__()
        self.model = model
        self.maps = nn.Identity()
        self.mask: torch.Tensor | None = None

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        if self.mask is None or self.mask.shape != (1, maps.shape[0]):
            raise RuntimeError("the frame mask must be set to [1, T] before the wrapper is called")
        video_logit = self.model.head(self.maps(maps).unsqueeze(0), self.mask).video_logit  # [1]
        return video_logit.reshape(1, 1).expand(maps.shape[0], 1)


class GradCamEngine:
    """Grad-CAM of the video's fake logit for each analysed frame; build once, call from any thread.

    The engine takes the model over: it is moved to ``device``, put in eval mode and every parameter except those
    of the Grad-CAM target layer is frozen (``requires_grad=False``); on CPU its weights are made channels-last.
    Do not train or share it afterwards. ``device``: None picks CUDA when available. ``precision``: "fp32"
    (default) or "bf16" (autocast; see the module docstring).
    """

    def __init__(
        self, model: TemporalClassifier, device: str | torch.device | None = None, precision: Precision = "fp32"
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.device = default_device() if device is None else torch.device(device)
        self.precision: Precision = precision
        self._memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":  # 4D weights channels-last (torch's stubs lack to()'s memory_format)
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.target_layer = model.gradcam_target_layer()
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in self.target_layer.parameters():
            p.requires_grad_(True)
        self._wrapper = _FramesAsBatch(self.model).eval()
        self._head = _HeadOnMaps(self.model).eval()
        self._lock = threading.Lock()

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

    def compute_from_maps(self, maps: np.ndarray, present: np.ndarray, size: int = 224) -> np.ndarray:
        """CAMs float32 ``[T, size, size]`` in [0, 1] from the served feature maps ``[T, C, h, w]``.

        Same Grad-CAM as ``compute`` (gradient of the video logit weighting each frame's maps), through the head
        only; each map is min-max scaled on its own, then upsampled bilinearly to the crop size.
        """
        maps = np.asarray(maps)
        mask = np.asarray(present, dtype=bool).reshape(-1)
        if maps.ndim != 4 or len(mask) != len(maps):
            raise ValueError(f"expected maps [T, C, h, w] and a mask of T entries, got {maps.shape}, {mask.shape}")
        frames = len(maps)
        cams = np.zeros((frames, size, size), np.float32)
        if not mask.any():
            return cams
        inputs = torch.from_numpy(maps.astype(np.float32)).to(self.device).requires_grad_(True)
        mask_tensor = torch.from_numpy(mask.astype(np.float32))[None].to(self.device)
        with self._lock, torch.enable_grad():
            self._head.mask = mask_tensor
            try:
                with GradCAM(model=self._head, target_layers=[self._head.maps]) as cam:
                    small = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(0)] * frames)
            finally:
                self._head.mask = None
        import cv2

        for i in np.flatnonzero(mask):
            cams[i] = cv2.resize(np.nan_to_num(small[i], nan=0.0), (size, size), interpolation=cv2.INTER_LINEAR)
        np.clip(cams, 0.0, 1.0, out=cams)
        return cams


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
