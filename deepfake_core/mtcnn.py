"""MTCNN face detector networks (P-Net, R-Net, O-Net) in plain torch.

The weights are the ones shipped in the ``facenet-pytorch==2.6.0`` wheel (``facenet_pytorch/data/*.pt``). That
package is never imported (its ``__init__`` imports torchvision): only its data folder is located and read.

The layer names and the math match facenet-pytorch exactly, so its state dicts load strictly. The outputs are
reordered to ``(prob, reg[, landmarks])``, the order the ONNX export and the Triton configs use.
Inputs are RGB float images already normalised as ``(x - 127.5) * 0.0078125``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

__all__ = ["PNet", "RNet", "ONet", "mtcnn_weights_dir", "load_mtcnn", "PIXEL_MEAN", "PIXEL_SCALE"]

# Pixel normalisation the networks were trained with: (x - PIXEL_MEAN) * PIXEL_SCALE.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 0.0078125

_FACENET_REQUIREMENT = "facenet-pytorch==2.6.0"

_Net = TypeVar("_Net", bound=nn.Module)


class PNet(nn.Module):
    """Proposal network: fully convolutional, stride 2, 12x12 cells.

    ``forward(image [B,3,H,W]) -> (prob [B,2,h,w], reg [B,4,h,w])``; ``prob[:, 1]`` is the face probability.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(image))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        prob = self.softmax4_1(self.conv4_1(x))
        reg = self.conv4_2(x)
        return prob, reg


class RNet(nn.Module):
    """Refinement network on 24x24 crops: ``forward(image [B,3,24,24]) -> (prob [B,2], reg [B,4])``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(image)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The original Caffe weights expect (W, H, C) order before the dense layer.
        x = x.permute(0, 3, 2, 1).contiguous().flatten(1)
        x = self.prelu4(self.dense4(x))
        prob = self.softmax5_1(self.dense5_1(x))
        reg = self.dense5_2(x)
        return prob, reg


class ONet(nn.Module):
    """Output network on 48x48 crops: ``forward(image) -> (prob [B,2], reg [B,4], landmarks [B,10])``.

    Landmarks are 5 x coordinates followed by 5 y coordinates, relative to the box (facenet-pytorch layout).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(image)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous().flatten(1)
        x = self.prelu5(self.dense5(x))
        prob = self.softmax6_1(self.dense6_1(x))
        reg = self.dense6_2(x)
        landmarks = self.dense6_3(x)
        return prob, reg, landmarks


def mtcnn_weights_dir() -> Path:
    """Folder holding ``pnet.pt``, ``rnet.pt`` and ``onet.pt`` from the installed facenet-pytorch wheel."""
    hint = f"install it without its dependencies: pip install --no-deps {_FACENET_REQUIREMENT}"
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"MTCNN weights not found: facenet-pytorch is not installed; {hint}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [name for name in ("pnet.pt", "rnet.pt", "onet.pt") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"MTCNN weights {missing} missing under {folder}; {hint}")
    return folder


def _load(net: _Net, name: str, folder: Path) -> _Net:
    state_dict = torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state_dict, strict=True)
    net.eval()
    return net


def load_mtcnn() -> tuple[PNet, RNet, ONet]:
    """P-Net, R-Net and O-Net with facenet-pytorch's pretrained weights, in eval mode on CPU."""
    folder = mtcnn_weights_dir()
    pnet = _load(PNet(), "pnet", folder)
    rnet = _load(RNet(), "rnet", folder)
    onet = _load(ONet(), "onet", folder)
    return pnet, rnet, onet
