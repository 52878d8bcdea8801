"""Grad-CAM of the video verdict on the PyTorch twin: one map per analysed frame, from one backward pass.

The served model outputs the frame encoder's last feature maps (``FEATURE_MAPS``, float16): ``compute_from_maps``
runs Grad-CAM on them through the twin's head alone (pooling, temporal model, video head), so the CNN is not run
twice and the maps explain exactly the activations Triton computed. The target layer is an identity over those
maps, so the gradient of the video logit with respect to each frame's maps gives that frame's CAM. Measured:
~0.05 s for T=32 on the 2-core CPU, against ~1.9 s through the whole twin from the crops (the reference path in
``tests/gateway/inference/gradcam_reference.py``, which checks that both give the same maps).
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch import nn

from deepfake_core import constants as C
from deepfake_core.classifier import Classifier
from gateway.services.inference.torchvision_compat import ensure_torchvision

ensure_torchvision()  # before pytorch_grad_cam: it imports torchvision at package import

from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

__all__ = ["GradCamEngine", "default_device"]


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _HeadOnMaps(nn.Module):
    """The twin's head as a per-frame model over feature maps: ``[T, C, h, w] -> [T, 1]`` (video logit repeated).

    ``self.maps`` (an identity) is the Grad-CAM target layer: its activations are the feature maps themselves.
    """

    def __init__(self, model: Classifier) -> None:
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
    Do not train or share it afterwards. ``device``: None picks CUDA when available.
    """

    def __init__(self, model: Classifier, device: str | torch.device | None = None) -> None:
        self.device = default_device() if device is None else torch.device(device)
        self._memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":  # 4D weights channels-last (torch's stubs lack to()'s memory_format)
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.target_layer = model.gradcam_target_layer()
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in self.target_layer.parameters():
            p.requires_grad_(True)
        self._head = _HeadOnMaps(self.model).eval()
        self._lock = threading.Lock()

    def compute_from_maps(self, maps: np.ndarray, present: np.ndarray, size: int = C.CROP_SIZE) -> np.ndarray:
        """CAMs float32 ``[T, size, size]`` in [0, 1] from the served feature maps ``[T, C, h, w]``.

        Same Grad-CAM as the full twin's (gradient of the video logit weighting each frame's maps), through the head
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
