"""Training on generated clips: the serving face pipeline offline, batches, a smoke run that lowers the loss,
resumable and deterministic runs, and the checkpoint's round trip through ONNX export."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from skimage.data import astronaut

from deepfake_core.checkpoint import load_checkpoint
from deepfake_core.classifier import ExportWrapper
from deepfake_core.preprocess import normalize_crops
from export.onnx_export import export_models
from tests.media import face_video
from training.augment import AugmentConfig
from training.datasets import Sample
from training.faces_cache import FaceClip, FaceExtractor, torch_nets
from training.pretrained import lite0_state_dict
from training.train import ClipPool, TrainConfig, main, make_batch, train

TINY = {"width_mult": 0.25, "depth_mult": 0.34, "dropout": 0.0, "drop_path": 0.0, "temporal_dim": 64}
FRAMES = 6


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("train_media")
    face_video(folder / "a.mp4", width=480, height=270, seconds=1.0)
    face_video(folder / "b.mp4", width=320, height=320, seconds=1.2, fps=20)
    photo = folder / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    return {"a": folder / "a.mp4", "b": folder / "b.mp4", "photo": photo, "folder": folder}


@pytest.fixture(scope="module")
def extractor(tmp_path_factory: pytest.TempPathFactory) -> FaceExtractor:
    return FaceExtractor(FRAMES, tmp_path_factory.mktemp("face_cache"), nets=torch_nets())


@pytest.fixture(scope="module")
def pool(media: dict[str, Path], extractor: FaceExtractor) -> ClipPool:
    samples = [Sample(media[k], 0, k, "generated") for k in ("a", "b", "photo")]
    return ClipPool([(s, extractor(s)) for s in samples])


def _config(**kw: object) -> TrainConfig:
    base = TrainConfig(
        steps=4, batch=2, frames=2, lr=2e-3, warmup=1, save_every=0, arch=TINY, augment=AugmentConfig.off()
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_face_pipeline_offline_and_its_cache(media: dict[str, Path], extractor: FaceExtractor) -> None:
    sample = Sample(media["a"], 0, "a", "generated")
    clip = extractor(sample)
    assert clip.crops.shape == (FRAMES, 224, 224, 3) and clip.crops.dtype == np.uint8
    assert clip.present.all()
    # The face is centred in its crop (margin 1/3 each side): eyes in the upper half, mouth in the lower.
    lm = clip.landmarks[clip.present]
    assert np.all((lm > 40) & (lm < 184))
    assert np.all(lm[:, :2, 1].mean(1) < lm[:, 3:, 1].mean(1))
    cached = list(extractor.cache_dir.glob("*.npz"))  # type: ignore[union-attr]
    assert cached
    again = extractor(sample)  # from the cache
    np.testing.assert_array_equal(again.crops, clip.crops)
    assert extractor.key(sample) != extractor.key(dataclasses.replace(sample, panel=(0, 2)))

    photo = extractor(Sample(media["photo"], 0, "p", "generated"))
    assert photo.crops.shape == (1, 224, 224, 3) and photo.present.all()


def test_panel_of_a_side_by_side_clip(media: dict[str, Path]) -> None:
    import training.faces_cache as fc

    frames = np.arange(2 * 4 * 9 * 3, dtype=np.uint8).reshape(2, 4, 9, 3)
    np.testing.assert_array_equal(fc._cut_panel(frames, (1, 3)), frames[:, :, 3:6])
    np.testing.assert_array_equal(fc._cut_panel(frames, None), frames)


def test_batches_are_seeded_masked_and_mixed(pool: ClipPool) -> None:
    cfg = _config(batch=16, frames=3)
    a, b = make_batch(pool, cfg, 0), make_batch(pool, cfg, 0)
    assert torch.equal(a.faces, b.faces) and a.kinds == b.kinds
    assert not torch.equal(a.faces, make_batch(pool, cfg, 1).faces)
    assert a.faces.shape == (16, 3, 3, 224, 224) and a.mask.shape == (16, 3)
    assert a.kinds == ["real", "sbi"] * 8  # pairs: a real clip and its self-blended twin (no labelled fakes here)
    real, blended = a.faces[0], a.faces[1]  # same frames, same (here: no) augmentation; only the face differs
    assert torch.equal(real[..., :12, :12], blended[..., :12, :12]) and not torch.equal(real, blended)
    assert a.labels.tolist() == [float(k != "real") for k in a.kinds]
    absent = a.mask == 0
    assert torch.all(a.faces[absent] == 0)  # zero-filled


def test_training_smoke_run_lowers_the_loss(pool: ClipPool, tmp_path: Path) -> None:
    cfg = _config(steps=12, batch=4, overfit_batches=1, lr=3e-3)
    model, losses, timing = train(pool, cfg, tmp_path / "smoke.pt", progress=False)
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    assert timing["steps"] == 12 and timing["clips_per_s"] > 0
    loaded, meta = load_checkpoint(tmp_path / "smoke.pt")
    assert meta["arch"]["width_mult"] == 0.25 and meta["metrics"]["training"]["steps"] == 12
    assert not (tmp_path / "smoke.pt.state.pt").exists()


def test_resumed_run_equals_uninterrupted_run(pool: ClipPool, tmp_path: Path) -> None:
    cfg = _config(steps=4, save_every=1)
    _, full_losses, _ = train(pool, cfg, tmp_path / "full.pt", progress=False)
    _, first, _ = train(pool, cfg, tmp_path / "cut.pt", progress=False, stop_after=2)
    assert len(first) == 2 and (tmp_path / "cut.pt.state.pt").exists() and not (tmp_path / "cut.pt").exists()
    _, resumed, _ = train(pool, cfg, tmp_path / "cut.pt", progress=False, resume=True)
    assert resumed == full_losses
    a = torch.load(tmp_path / "full.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_round_trip_through_onnx(
    pool: ClipPool, media: dict[str, Path], extractor: FaceExtractor, tmp_path: Path
) -> None:
    """Save (float16) -> load -> export to a temporary model repository -> ONNX Runtime == twin on real crops."""
    ckpt = tmp_path / "model.pt"
    train(pool, _config(steps=2), ckpt, progress=False, half=True, metadata={"version": "smoke-1", "threshold": 0.42})
    raw = torch.load(ckpt, weights_only=True)
    assert all(t.dtype == torch.float16 for t in raw["state_dict"].values() if t.is_floating_point())
    model, meta = load_checkpoint(ckpt)
    assert meta["version"] == "smoke-1" and meta["threshold"] == 0.42

    repo = tmp_path / "model_repository"
    assert export_models(repo, ckpt, only=["temporal_classifier"], log=lambda _: None) == {
        "temporal_classifier": "exported"
    }
    served = json.loads((repo / "temporal_classifier" / "1" / "metadata.json").read_text())
    assert served["version"] == "smoke-1" and served["threshold"] == 0.5 and served["threshold_folded"] == 0.42

    clip: FaceClip = extractor(Sample(media["b"], 0, "b", "generated"))
    faces = normalize_crops(clip.crops)[None]
    mask = clip.present.astype(np.float32)[None]
    mask[0, 1] = 0.0  # one masked frame too
    session = ort.InferenceSession(str(repo / "temporal_classifier" / "1" / "model.onnx"))
    names = ["PROB_FAKE", "VIDEO_LOGIT", "FRAME_SCORES"]
    prob, logit, scores = session.run(names, {"FACES": faces, "FACE_MASK": mask})
    model.affine_logits(1.0, -math.log(0.42 / 0.58))  # the export folds the threshold into the served score
    with torch.no_grad():
        want = ExportWrapper(model)(torch.from_numpy(faces), torch.from_numpy(mask))
    np.testing.assert_allclose(prob, want[0].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(scores, want[2].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(logit, want[1].numpy(), atol=1e-4, rtol=1e-4)
    assert scores[0, 1] == 0.0


def test_training_from_imagenet_keeps_frozen_blocks(pool: ClipPool, tmp_path: Path) -> None:
    """--pretrained --freeze-blocks: the ImageNet encoder trains, but its stem and first blocks (weights and
    BatchNorm statistics) stay as they came."""
    cfg = TrainConfig(
        steps=2,
        batch=2,
        frames=2,
        lr=1e-3,
        warmup=1,
        save_every=0,
        arch={"backbone": "effnet_lite0", "dropout": 0.0, "drop_path": 0.0, "temporal_dim": 64},
        pretrained=True,
        freeze_blocks=6,
        augment=AugmentConfig.off(),
    )
    model, losses, _ = train(pool, cfg, tmp_path / "m.pt", progress=False)
    imagenet = lite0_state_dict()
    encoder = model.frame_encoder.state_dict()
    for key in ("stem.0.weight", "stem.1.running_mean", "blocks.5.project.0.weight", "blocks.5.project.1.running_var"):
        assert torch.equal(encoder[key], imagenet[key]), key  # fixed: weights and BatchNorm statistics
    assert not torch.equal(encoder["blocks.6.project.0.weight"], imagenet["blocks.6.project.0.weight"])
    assert len(losses) == 2 and np.isfinite(losses).all()
    with pytest.raises(SystemExit, match="needs --backbone effnet_lite0"):
        main(["--data", str(tmp_path), "--out", str(tmp_path / "x.pt"), "--pretrained"])
