"""DINOv2 ViT-S/14 in plain torch and the frame-mean classifier built on it: the package's weights reproduce the
package's own ONNX graph; mask semantics; frame and video scores on one scale; a head-only checkpoint."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.data import astronaut

from deepfake_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from deepfake_core.classifier import VIT_ARCH, ExportWrapper, FrameMeanClassifier, build_classifier
from deepfake_core.preprocess import normalize_crops
from deepfake_core.vit import VitEncoder, dinov2_onnx_path, load_dinov2, resize_position_embeddings


@pytest.fixture(scope="module")
def model() -> FrameMeanClassifier:
    built = build_classifier(VIT_ARCH, pretrained=True)
    assert isinstance(built, FrameMeanClassifier)
    with torch.no_grad():  # a head that reacts to the features (the zero-initialised one scores 0.5 everywhere)
        built.frame_head.weight.copy_(torch.linspace(-1, 1, built.frame_head.in_features)[None])
        built.frame_head.bias.fill_(0.3)
    return built.eval()


def _faces(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def test_weights_reproduce_the_packages_onnx_backbone() -> None:
    """Our port, with the package's tensors, gives the package graph's final LayerNorm output (224 px)."""
    import onnx
    import onnxruntime as ort

    graph = onnx.load(str(dinov2_onnx_path()))
    final = [n for n in graph.graph.node if n.name.startswith("/backbone/layernorm/")][-1].output[0]
    graph.graph.output.append(onnx.helper.make_tensor_value_info(final, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    x = normalize_crops(cv2.resize(astronaut(), (224, 224), interpolation=cv2.INTER_AREA)[None])
    want = session.run([final], {"input_image": x})[0]
    encoder = VitEncoder(image_size=224, out_blocks=(12,)).eval()
    load_dinov2(encoder)
    with torch.no_grad():
        got = encoder.norm(encoder.tokens(torch.from_numpy(x))[-1]).numpy()
    assert got.shape == want.shape == (1, 1 + 16 * 16, 384)
    assert np.abs(got - want).max() < 1e-3 * np.abs(want).max()


def test_position_embeddings_resample_to_the_grid() -> None:
    pos = torch.randn(1, 37 * 37, 8)
    assert resize_position_embeddings(pos, 8).shape == (1, 64, 8)
    assert resize_position_embeddings(pos, 37) is pos


def test_feature_maps_and_pooling(model: FrameMeanClassifier) -> None:
    faces = _faces(1, 3)
    with torch.no_grad():
        maps = model.feature_maps(faces)
    assert maps.shape == (1, 3, *model.feature_map_shape) == (1, 3, 768, 8, 8)
    # 224 px crops are pooled 2x2 to the encoder's 112 px: the same as giving it the pooled crops.
    pooled = torch.nn.functional.avg_pool2d(faces[0], 2)
    with torch.no_grad():
        direct = model.frame_encoder.feature_map(pooled)
    torch.testing.assert_close(maps[0], direct)


def test_video_logit_is_the_mean_of_the_frame_logits(model: FrameMeanClassifier) -> None:
    faces = _faces(2, 4, seed=1)
    mask = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0]], dtype=torch.float32)
    with torch.no_grad():
        out = model(faces, mask)
    assert out.frame_logits[0, 1] == 0 and torch.all(out.frame_logits[1] == 0)
    torch.testing.assert_close(out.video_logit[0], out.frame_logits[0, [0, 2, 3]].mean())
    assert out.video_logit[1] == 0  # no face: probability 0.5, as the temporal model
    # A masked frame's content has no influence.
    changed = faces.clone()
    changed[0, 1] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(model(changed, mask).video_logit, out.video_logit)


def test_frames_all_fake_make_a_fake_video(model: FrameMeanClassifier) -> None:
    """Whatever the frames, the video's probability lies between its frames' lowest and highest: a video whose
    frames all score >= 0.5 scores >= 0.5 (the page's chart cannot contradict the verdict)."""
    wrapper = ExportWrapper(model).eval()
    for seed in range(3):
        faces, mask = _faces(1, 5, seed=seed), torch.ones(1, 5)
        with torch.no_grad():
            prob, _, frame_scores, _ = wrapper(faces, mask)
        assert frame_scores.min() - 1e-6 <= prob[0, 0] <= frame_scores.max() + 1e-6


def test_affine_logits_moves_frames_and_video_together(model: FrameMeanClassifier) -> None:
    faces, mask = _faces(1, 3, seed=4), torch.ones(1, 3)
    copy = build_classifier(VIT_ARCH)
    copy.load_state_dict(model.state_dict())
    copy.eval()
    copy.affine_logits(2.0, -1.0)
    with torch.no_grad():
        before, after = model(faces, mask), copy(faces, mask)
    torch.testing.assert_close(after.frame_logits, 2.0 * before.frame_logits - 1.0)
    torch.testing.assert_close(after.video_logit, 2.0 * before.video_logit - 1.0)


def test_checkpoint_stores_the_head_only(model: FrameMeanClassifier, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "vit.pt", model, {"version": "t", "threshold": 0.5})
    assert path.stat().st_size < 50_000  # the 22 M encoder parameters come from the package
    loaded, meta = load_checkpoint(path)
    assert meta["arch"]["name"] == "vit_frame_mean"
    faces, mask = _faces(1, 2, seed=5), torch.ones(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(faces, mask).video_logit, model(faces, mask).video_logit)
    # A head of the wrong size is refused with a clear error.
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["frame_head.weight"] = torch.zeros(1, 5)
    payload["state_dict"]["extra"] = torch.zeros(1)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="unexpected"):
        load_checkpoint(tmp_path / "bad.pt")


def test_encoder_is_frozen(model: FrameMeanClassifier) -> None:
    assert not any(p.requires_grad for p in model.frame_encoder.parameters())
    assert all(p.requires_grad for p in model.frame_head.parameters())
