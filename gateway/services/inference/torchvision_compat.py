"""A tiny torchvision stand-in so that ``pytorch_grad_cam`` imports without torchvision.

Why: ``grad-cam`` imports torchvision at package import, but only for ``Compose``/``Normalize``/``ToTensor``
(``utils/image.py``), ``ops.box_iou`` (``utils/model_targets.py``) and ``transforms.functional.resize``
(``sess.py``). PyPI's torchvision is a CUDA build that fails to import next to the CPU torch this project pins
(``constraints.txt``; see ``requirements-nodeps.txt``), so the gateway installs grad-cam with ``--no-deps`` and
calls :func:`ensure_torchvision` before importing it.

Rules: a real torchvision (anything importable under that name) is never touched; the stand-in is registered only
when ``import torchvision`` fails, implements just those five helpers in plain torch, and marks itself with
``__torchvision_shim__ = True``. The gateway's Grad-CAM uses none of them at run time; they exist so that the
imports succeed and the few helpers behave sensibly if called.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SHIM_MARKER", "ensure_torchvision", "is_shim"]

SHIM_MARKER = "__torchvision_shim__"
_LOCK = threading.Lock()


class Compose:
    """Apply transforms in order (``torchvision.transforms.Compose``)."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Any) -> Any:
        for transform in self.transforms:
            image = transform(image)
        return image


class ToTensor:
    """HxWxC array (or PIL image) -> CxHxW float tensor; uint8 is scaled to [0, 1] (``transforms.ToTensor``)."""

    def __call__(self, image: Any) -> torch.Tensor:
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[:, :, None]
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        if tensor.dtype == torch.uint8:
            return tensor.float().div_(255.0)
        return tensor


class Normalize:
    """``(tensor - mean) / std`` per channel of a [..., C, H, W] tensor (``transforms.Normalize``)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        self.mean = list(mean)
        self.std = list(std)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device)[:, None, None]
        std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device)[:, None, None]
        return (tensor - mean) / std


def resize(image: torch.Tensor, size: int | Sequence[int], *args: Any, **kwargs: Any) -> torch.Tensor:
    """Bilinear, antialiased resize of a [..., H, W] tensor (``transforms.functional.resize``).

    ``size`` an int: the shorter side becomes ``size``, keeping the aspect; a pair: (height, width).
    """
    height, width = image.shape[-2:]
    if isinstance(size, int) or len(size) == 1:
        short = size if isinstance(size, int) else int(size[0])
        if height <= width:
            out = (short, max(1, round(width * short / height)))
        else:
            out = (max(1, round(height * short / width)), short)
    else:
        out = (int(size[0]), int(size[1]))
    lead = image.shape[:-2]
    flat = image.reshape(-1, 1, height, width)
    dtype = flat.dtype
    resized = torch.nn.functional.interpolate(
        flat.float(), size=out, mode="bilinear", align_corners=False, antialias=True
    )
    return resized.to(dtype).reshape(*lead, *out)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU [N, M] of boxes (x1, y1, x2, y2) (``torchvision.ops.box_iou``)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def _module(name: str, doc: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name, doc)
    # A spec keeps importlib.util.find_spec(name) from raising on a module without one.
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=True)
    setattr(module, SHIM_MARKER, True)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def _build_shim() -> dict[str, types.ModuleType]:
    doc = "Stand-in for torchvision (gateway.services.inference.torchvision_compat); not the real package."
    functional = _module("torchvision.transforms.functional", doc, resize=resize)
    transforms = _module(
        "torchvision.transforms",
        doc,
        Compose=Compose,
        Normalize=Normalize,
        ToTensor=ToTensor,
        functional=functional,
    )
    ops = _module("torchvision.ops", doc, box_iou=box_iou)
    root = _module("torchvision", doc, transforms=transforms, ops=ops, __version__="0.0.0+shim")
    return {m.__name__: m for m in (root, transforms, functional, ops)}


def is_shim(module: types.ModuleType | None = None) -> bool:
    """True when ``module`` (default: ``sys.modules["torchvision"]``) is this stand-in."""
    module = sys.modules.get("torchvision") if module is None else module
    return bool(getattr(module, SHIM_MARKER, False))


def ensure_torchvision() -> bool:
    """Make ``import torchvision`` succeed; returns True when the stand-in was (or already is) in use.

    A torchvision that imports (or any module already registered under that name) is left as it is and False is
    returned. Only when the import fails is the stand-in registered in ``sys.modules``. Idempotent, thread-safe.
    """
    with _LOCK:
        existing = sys.modules.get("torchvision")
        if existing is not None:
            return is_shim(existing)
        try:
            importlib.import_module("torchvision")
        except Exception:  # a broken CUDA build raises RuntimeError, not only ImportError
            # A failed import may leave half-initialised submodules behind; clear them before registering.
            for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
                del sys.modules[name]
            sys.modules.update(_build_shim())
            return True
        return False
