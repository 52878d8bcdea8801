"""MTCNN networks: strict weight loading, equality with facenet-pytorch's own modules, real detections."""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
import torch
from torch import nn
from torch.nn import functional as F

from deepfake_core import mtcnn
from deepfake_core.mtcnn import ONet, PNet, RNet, load_mtcnn, mtcnn_weights_dir

ASTRONAUT_FACE = (180, 61, 268, 174)  # x1, y1, x2, y2 in skimage.data.astronaut() (512x512)


@pytest.fixture(scope="module")
def nets() -> tuple[PNet, RNet, ONet]:
    return load_mtcnn()


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    """The test image as a float tensor [1, 3, 512, 512], pixel values 0..255."""
    return torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None].float()


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - mtcnn.PIXEL_MEAN) * mtcnn.PIXEL_SCALE


def _facenet_reference_modules() -> dict[str, type[nn.Module]]:
    """facenet-pytorch's own PNet/RNet/ONet classes, taken from its source without importing the package
    (its __init__ imports torchvision)."""
    source_path = mtcnn_weights_dir().parent / "models" / "mtcnn.py"
    tree = ast.parse(source_path.read_text())
    wanted = {"PNet", "RNet", "ONet"}
    classes: list[ast.stmt] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in wanted]
    namespace: dict[str, Any] = {"torch": torch, "nn": nn, "os": os, "__file__": str(source_path)}
    exec(compile(ast.Module(body=classes, type_ignores=[]), str(source_path), "exec"), namespace)
    return {name: namespace[name] for name in sorted(wanted)}


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_weights_dir_holds_the_three_files() -> None:
    folder = mtcnn_weights_dir()
    assert sorted(p.name for p in folder.glob("?net.pt")) == ["onet.pt", "pnet.pt", "rnet.pt"]


@pytest.mark.parametrize(("name", "cls"), [("pnet", PNet), ("rnet", RNet), ("onet", ONet)])
def test_state_dicts_load_strictly(name: str, cls: type[nn.Module]) -> None:
    state = torch.load(mtcnn_weights_dir() / f"{name}.pt", weights_only=True)
    net = cls()
    assert set(net.state_dict()) == set(state)
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_load_mtcnn_returns_eval_modules(nets: tuple[PNet, RNet, ONet]) -> None:
    assert [type(n) for n in nets] == [PNet, RNet, ONet]
    assert not any(n.training for n in nets)


def test_outputs_equal_facenet_pytorch(nets: tuple[PNet, RNet, ONet]) -> None:
    reference = _facenet_reference_modules()
    pnet, rnet, onet = nets
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = torch.rand(2, 3, 67, 91, generator=gen) * 2 - 1
        reg, prob = reference["PNet"]().eval()(x)
        ours = pnet(x)
        torch.testing.assert_close(ours[0], prob, rtol=0, atol=0)
        torch.testing.assert_close(ours[1], reg, rtol=0, atol=0)

        x = torch.rand(5, 3, 24, 24, generator=gen) * 2 - 1
        reg, prob = reference["RNet"]().eval()(x)
        ours = rnet(x)
        torch.testing.assert_close(ours[0], prob, rtol=0, atol=0)
        torch.testing.assert_close(ours[1], reg, rtol=0, atol=0)

        x = torch.rand(5, 3, 48, 48, generator=gen) * 2 - 1
        reg, landmarks, prob = reference["ONet"]().eval()(x)
        ours = onet(x)
        torch.testing.assert_close(ours[0], prob, rtol=0, atol=0)
        torch.testing.assert_close(ours[1], reg, rtol=0, atol=0)
        torch.testing.assert_close(ours[2], landmarks, rtol=0, atol=0)


def test_output_shapes(nets: tuple[PNet, RNet, ONet]) -> None:
    pnet, rnet, onet = nets
    with torch.no_grad():
        prob, reg = pnet(torch.zeros(3, 3, 50, 70))
        assert prob.shape == (3, 2, 20, 30) and reg.shape == (3, 4, 20, 30)
        torch.testing.assert_close(prob.sum(1), torch.ones(3, 20, 30))
        prob, reg = rnet(torch.zeros(4, 3, 24, 24))
        assert prob.shape == (4, 2) and reg.shape == (4, 4)
        prob, reg, landmarks = onet(torch.zeros(4, 3, 48, 48))
        assert prob.shape == (4, 2) and reg.shape == (4, 4) and landmarks.shape == (4, 10)


@pytest.mark.parametrize("scale", [0.12, 0.1])
def test_pnet_finds_the_astronaut_face(nets: tuple[PNet, RNet, ONet], astronaut: torch.Tensor, scale: float) -> None:
    """At the pyramid scales where the ~100 px face becomes P-Net's 12 px cell, the best cell is the face."""
    side = int(512 * scale + 1)  # facenet-pytorch's pyramid rule
    image = F.interpolate(astronaut, size=(side, side), mode="area")
    with torch.no_grad():
        prob, _ = nets[0](_normalise(image))
    face = prob[0, 1]
    best = float(face.max())
    y, x = divmod(int(face.argmax()), face.shape[1])
    # Cell -> box in the original image (facenet-pytorch generateBoundingBox: stride 2, cell 12).
    box = (
        np.floor((2 * x + 1) / scale),
        np.floor((2 * y + 1) / scale),
        np.floor((2 * x + 12) / scale),
        np.floor((2 * y + 12) / scale),
    )
    assert best > 0.9
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE
    assert fx1 <= cx <= fx2 and fy1 <= cy <= fy2, box
    assert _iou(box, ASTRONAUT_FACE) > 0.5, box


def test_rnet_and_onet_accept_the_face_and_reject_background(
    nets: tuple[PNet, RNet, ONet], astronaut: torch.Tensor
) -> None:
    _, rnet, onet = nets
    x1, y1, x2, y2 = ASTRONAUT_FACE
    face = astronaut[:, :, y1:y2, x1:x2]
    background = astronaut[:, :, 300:400, 0:100]
    with torch.no_grad():
        r_face = rnet(_normalise(F.interpolate(face, size=(24, 24), mode="area")))[0]
        o_face, _, landmarks = onet(_normalise(F.interpolate(face, size=(48, 48), mode="area")))
        o_background = onet(_normalise(F.interpolate(background, size=(48, 48), mode="area")))[0]
    assert float(r_face[0, 1]) > 0.9
    assert float(o_face[0, 1]) > 0.9
    assert float(o_background[0, 1]) < 0.5
    xs, ys = landmarks[0, :5], landmarks[0, 5:]
    assert float(xs[0]) < float(xs[1])  # left eye left of right eye
    assert max(float(ys[0]), float(ys[1])) < min(float(ys[3]), float(ys[4]))  # eyes above mouth corners


def test_missing_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "facenet_pytorch" else real_find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(mtcnn.importlib.util, "find_spec", find_spec)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps facenet-pytorch==2\.6\.0"):
        mtcnn_weights_dir()


def test_mtcnn_module_does_not_import_facenet_pytorch() -> None:
    source = Path(mtcnn.__file__).read_text()
    assert "import facenet_pytorch" not in source and "from facenet_pytorch" not in source
