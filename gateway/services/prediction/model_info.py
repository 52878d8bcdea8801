"""The served model's identity and decision threshold, as the gateway reports it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_core import constants as C

log = logging.getLogger("gateway.pipeline")


@dataclass(frozen=True)
class ModelInfo:
    """The served model's identity and decision threshold (from the exported metadata, else the twin's)."""

    name: str
    version: str
    threshold: float
    num_frames: int
    crop_size: int
    training_data: str | list[str] | None
    twin_version: str

    @classmethod
    def resolve(cls, metadata_path: Path | None, twin_metadata: dict[str, Any]) -> ModelInfo:
        """Triton's classifier metadata (written by ``make export`` next to the ONNX) wins; the twin comes from the
        same checkpoint, and a mismatch is logged because Grad-CAM would then explain another model."""
        served: dict[str, Any] = {}
        if metadata_path is not None and metadata_path.is_file():
            try:
                served = json.loads(metadata_path.read_text())
            except (OSError, ValueError) as exc:
                log.warning("cannot read %s: %s", metadata_path, exc)
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
        )
