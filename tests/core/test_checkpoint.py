"""Checkpoint format: round trips (float32 and float16), metadata, weights_only loading, digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from deepfake_core.checkpoint import (
    CHECKPOINT_FORMAT,
    METADATA_KEYS,
    CheckpointError,
    checkpoint_digest,
    load_checkpoint,
    load_or_untrained,
    save_checkpoint,
)
from deepfake_core.classifier import TemporalClassifier, build_classifier, untrained_classifier
from deepfake_core.constants import DECISION_THRESHOLD, NUM_FRAMES, UNTRAINED_VERSION

SMALL = {"width_mult": 0.25, "depth_mult": 0.34}


@pytest.fixture(scope="module")
def model() -> TemporalClassifier:
    return untrained_classifier(SMALL)  # BatchNorm-calibrated: outputs depend on the input


def _outputs(model: TemporalClassifier) -> tuple[torch.Tensor, torch.Tensor]:
    faces = torch.randn(2, 4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    with torch.no_grad():
        video, frames = model(faces, mask)
    return video, frames


def test_float32_round_trip(model: TemporalClassifier, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", model, {"version": "v7", "threshold": 0.42, "metrics": {"auc": 0.9}})
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    for a, b in zip(_outputs(model), _outputs(loaded), strict=True):
        assert torch.equal(a, b)
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["version"] == "v7" and meta["threshold"] == 0.42 and meta["metrics"] == {"auc": 0.9}
    assert meta["arch"] == model.arch and meta["num_frames"] == NUM_FRAMES
    assert meta["created"] and meta["training_data"] == "unspecified"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


def test_half_round_trip(model: TemporalClassifier, tmp_path: Path) -> None:
    full = save_checkpoint(tmp_path / "full.pt", model, {"version": "v1"})
    half = save_checkpoint(tmp_path / "half.pt", model, {"version": "v1"}, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    raw = torch.load(half, weights_only=True)
    assert raw["state_dict"]["frame_head.weight"].dtype == torch.float16
    loaded, _ = load_checkpoint(half)
    assert all(t.dtype != torch.float16 for t in loaded.state_dict().values())
    # Equal to the model with its weights rounded through float16, and close to the original.
    rounded = build_classifier(SMALL).eval()
    rounded.load_state_dict(
        {k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    )
    for a, b in zip(_outputs(rounded), _outputs(loaded), strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(_outputs(loaded)[0], _outputs(model)[0], atol=5e-2, rtol=5e-2)


def test_file_is_plain_and_weights_only_loadable(model: TemporalClassifier, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", model, {"training_data": ["dfdc-part-0", "ff++"]})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT
    assert set(raw) == {"format", "state_dict", "metadata"}
    assert raw["metadata"]["training_data"] == ["dfdc-part-0", "ff++"]
    assert path.stat().st_mode & 0o044  # readable by the Triton / gateway user


def test_overwrite_is_atomic_replace(model: TemporalClassifier, tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, {"version": "a"})
    first = checkpoint_digest(path)
    save_checkpoint(path, model, {"version": "b"})
    assert checkpoint_digest(path) != first
    assert load_checkpoint(path)[1]["version"] == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_load_or_untrained() -> None:
    model, meta = load_or_untrained(None)
    assert meta["version"] == UNTRAINED_VERSION and meta["threshold"] == DECISION_THRESHOLD
    reference = untrained_classifier()
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_load_or_untrained_with_path(model: TemporalClassifier, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", model, {"version": "v3"})
    loaded, meta = load_or_untrained(path)
    assert meta["version"] == "v3"
    assert torch.equal(_outputs(loaded)[0], _outputs(model)[0])


def test_digest_is_sha256_of_the_file(model: TemporalClassifier, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", model, {"version": "v1"})
    assert checkpoint_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_rejects_foreign_files(tmp_path: Path) -> None:
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a deepfake-classifier/1 checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "state_dict": {}, "metadata": {"version": "x"}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="metadata lacks"):
        load_checkpoint(tmp_path / "bad.pt")


def test_unknown_metadata_key_is_an_error(model: TemporalClassifier, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown checkpoint metadata keys"):
        save_checkpoint(tmp_path / "m.pt", model, {"treshold": 0.3})
    assert not (tmp_path / "m.pt").exists()
