"""The served model's identity and decision threshold, as the gateway reports it."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_core import constants as C

log = logging.getLogger("gateway.pipeline")


@dataclass(frozen=True)
class ModelInfo:
    """The served model's identity and decision threshold (from the exported metadata, else the twin's), and the
    precision Triton serves the classifier at with the export's reason (None when no exported metadata says)."""

    name: str
    version: str
    threshold: float
    num_frames: int
    crop_size: int
    training_data: str | list[str] | None
    twin_version: str
    precision: str | None = None
    precision_reason: str | None = None

    @classmethod
    def resolve(cls, metadata_path: Path | None, twin_metadata: dict[str, Any]) -> ModelInfo:
        """Triton's classifier metadata (written by ``make export`` next to the ONNX) wins; the twin comes from the
        same checkpoint, and a mismatch is logged because Grad-CAM would then explain another model."""
        served = served_metadata(metadata_path)
        meta = {**twin_metadata, **served}
        twin_version = str(twin_metadata.get("version", C.UNTRAINED_VERSION))
        version = str(meta.get("version") or C.UNTRAINED_VERSION)
        if served and version != twin_version:
            log.warning("Triton serves classifier %s but the Grad-CAM twin is %s", version, twin_version)
        return cls(
            name=C.MODEL_NAME,
            version=version,
            threshold=float(meta.get("threshold", C.DECISION_THRESHOLD)),
            num_frames=int(meta.get("num_frames", C.NUM_FRAMES)),
            crop_size=int(meta.get("crop_size", C.CROP_SIZE)),
            training_data=meta.get("training_data"),
            twin_version=twin_version,
        ).with_precision_of(served)

    def with_precision_of(self, served: dict[str, Any]) -> ModelInfo:
        """This info with the precision (and its reason) of the exported metadata ``served``: only the export knows
        what Triton serves (the twin is always the float32 PyTorch model)."""
        return dataclasses.replace(
            self, precision=_text(served.get("precision")), precision_reason=_text(served.get("precision_reason"))
        )


def served_metadata(metadata_path: Path | None) -> dict[str, Any]:
    """The exported classifier's metadata.json ({} when absent or unreadable, logged)."""
    if metadata_path is None or not metadata_path.is_file():
        return {}
    try:
        served = json.loads(metadata_path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", metadata_path, exc)
        return {}
    return served if isinstance(served, dict) else {}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
