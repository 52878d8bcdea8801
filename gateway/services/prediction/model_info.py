"""The served model's identity and decision threshold, as the gateway reports it.

Triton is the one source of the served classifier's identity (``deepfake_core.served_identity``: the ``served.*``
parameters of temporal_classifier's config, read with ``get_model_config``); the Grad-CAM twin's checkpoint digest is
compared with it, and a difference is reported (``/api/v1/health``), never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepfake_core import constants as C
from deepfake_core.served_identity import ServedIdentity


@dataclass(frozen=True)
class ModelInfo:
    """The served model's identity and threshold (from Triton) beside the Grad-CAM twin's."""

    name: str
    version: str
    threshold: float
    num_frames: int
    crop_size: int
    training_data: str | list[str] | None
    twin_version: str
    twin_sha256: str | None  # the twin's checkpoint digest (None: the seeded untrained classifier)
    served: ServedIdentity | None  # what Triton reports; None while it could not be asked

    @property
    def served_sha256(self) -> str | None:
        return self.served.checkpoint_sha256 if self.served else None

    @property
    def precision(self) -> str | None:
        return self.served.precision if self.served else None

    @property
    def precision_reason(self) -> str | None:
        """Why the classifier is served at its precision (the export's reason, per Triton)."""
        return self.served.precision_reason if self.served else None

    @property
    def twin_matches(self) -> bool:
        """Whether the Grad-CAM twin is the checkpoint Triton serves (False while Triton's identity is unknown)."""
        return self.served is not None and self.served.checkpoint_sha256 == self.twin_sha256

    @classmethod
    def resolve(
        cls, served: ServedIdentity | None, twin_metadata: dict[str, Any], twin_sha256: str | None
    ) -> ModelInfo:
        """Version and threshold are Triton's; what only the checkpoint knows (frames, crop size, training data)
        comes from the twin's metadata when the twin is the served checkpoint. Without Triton's answer the twin's
        version stands in, with the served threshold every export folds to (0.5)."""
        twin_version = str(twin_metadata.get("version") or C.UNTRAINED_VERSION)
        same = served is not None and served.checkpoint_sha256 == twin_sha256
        checkpoint = twin_metadata if same or served is None else {}
        return cls(
            name=C.ENSEMBLE,
            version=served.version if served else twin_version,
            threshold=served.threshold if served else C.DECISION_THRESHOLD,
            num_frames=int(checkpoint.get("num_frames", C.NUM_FRAMES)),
            crop_size=int(checkpoint.get("crop_size", C.CROP_SIZE)),
            training_data=checkpoint.get("training_data"),
            twin_version=twin_version,
            twin_sha256=twin_sha256,
            served=served,
        )
