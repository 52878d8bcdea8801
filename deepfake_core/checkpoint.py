"""Classifier checkpoints: one documented format shared by training, export and the gateway.

A checkpoint is a ``torch.save`` file of plain types only (``torch.load(..., weights_only=True)`` opens it)::

    {
        "format": "deepfake-classifier/1",
        "state_dict": {name: tensor},   # float32, or float16 when saved with half=True
        "metadata": {
            "arch": {...},              # kwargs for build_classifier (see classifier.DEFAULT_ARCH)
            "num_frames": 32,           # T the model was trained with
            "crop_size": 224,           # face crop side in pixels
            "crop_margin": 0.333,       # box margin on each side, fraction of the box size
            "mean": [r, g, b],          # input normalisation (pixels scaled to [0, 1])
            "std": [r, g, b],
            "threshold": 0.5,           # PROB_FAKE >= threshold means FAKE
            "version": "2024-06-01",    # model version reported with every verdict
            "training_data": "...",     # string or list of strings
            "metrics": {...},           # evaluation results, e.g. {"auc": 0.93}
            "created": "2024-06-01T12:00:00+00:00",  # ISO 8601
        },
    }
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from deepfake_core.classifier import Classifier, build_classifier, resolve_arch, untrained_classifier
from deepfake_core.constants import (
    CROP_MARGIN,
    CROP_SIZE,
    DECISION_THRESHOLD,
    MEAN,
    NUM_FRAMES,
    STD,
    UNTRAINED_SEED,
    UNTRAINED_VERSION,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "METADATA_KEYS",
    "CheckpointError",
    "checkpoint_digest",
    "default_metadata",
    "load_checkpoint",
    "load_or_untrained",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "deepfake-classifier/1"
METADATA_KEYS = (
    "arch",
    "num_frames",
    "crop_size",
    "crop_margin",
    "mean",
    "std",
    "threshold",
    "version",
    "training_data",
    "metrics",
    "created",
)


class CheckpointError(ValueError):
    """The file is not a valid classifier checkpoint."""


def default_metadata(**overrides: Any) -> dict[str, Any]:
    """Metadata from the shared constants (the untrained model's), updated with ``overrides``."""
    metadata: dict[str, Any] = {
        "arch": resolve_arch(None),
        "num_frames": NUM_FRAMES,
        "crop_size": CROP_SIZE,
        "crop_margin": CROP_MARGIN,
        "mean": list(MEAN),
        "std": list(STD),
        "threshold": DECISION_THRESHOLD,
        "version": UNTRAINED_VERSION,
        "training_data": f"none (untrained, seed {UNTRAINED_SEED})",
        "metrics": {},
        "created": None,
    }
    unknown = sorted(set(overrides) - set(METADATA_KEYS))
    if unknown:
        raise ValueError(f"unknown checkpoint metadata keys: {unknown}")
    metadata.update(copy.deepcopy(overrides))
    return metadata


def save_checkpoint(path: str | Path, model: Classifier, metadata: dict[str, Any], half: bool = False) -> Path:
    """Write ``model`` atomically (temp file + os.replace); returns the path.

    Missing metadata keys come from the shared constants; ``arch`` is always the model's own; ``version``
    defaults to the UTC time stamp, ``created`` to now, ``training_data`` to "unspecified". Values must be
    plain types (str, int, float, bool, None, list, dict). ``half=True`` stores floating-point tensors as
    float16 (half the size; loading casts them back to float32).
    """
    path = Path(path)
    now = datetime.now(UTC)
    given = {k: v for k, v in metadata.items() if k != "arch"}
    meta = default_metadata(**{"training_data": "unspecified", **given})
    meta["arch"] = copy.deepcopy(model.arch)
    if not metadata.get("version"):
        meta["version"] = now.strftime("%Y%m%d-%H%M%S")
    if not meta["created"]:
        meta["created"] = now.isoformat(timespec="seconds")
    state = {
        name: (t.detach().half() if half and t.is_floating_point() else t.detach()).cpu().clone()
        for name, t in model.trained_state_dict().items()
    }
    payload = {"format": CHECKPOINT_FORMAT, "state_dict": state, "metadata": meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Classifier, dict[str, Any]]:
    """Model (eval mode, float32) and metadata from a checkpoint written by ``save_checkpoint``. A frozen
    pretrained encoder (arch ``vit_frame_mean``) is not in the file: it is loaded from its package."""
    payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (format: {found!r})")
    metadata = payload.get("metadata")
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: metadata is missing")
    missing = [k for k in METADATA_KEYS if k not in metadata]
    if missing:
        raise CheckpointError(f"{path}: metadata lacks {missing}")
    model = build_classifier(metadata["arch"], pretrained=True)
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    expected = model.trained_state_dict().keys()
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise CheckpointError(f"{path}: weights do not fit the arch: missing {missing[:5]}, unexpected {extra[:5]}")
    model.load_state_dict(state, strict=False)
    model.to(map_location).eval()
    return model, metadata


def load_or_untrained(path: str | Path | None) -> tuple[Classifier, dict[str, Any]]:
    """``load_checkpoint(path)``, or the seeded untrained model (version "untrained") when path is None."""
    if path is not None:
        return load_checkpoint(path)
    metadata = default_metadata()
    return untrained_classifier(metadata["arch"]), metadata


def checkpoint_digest(path: str | Path) -> str:
    """SHA-256 (hex) of the checkpoint file's bytes; export re-runs when it changes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
