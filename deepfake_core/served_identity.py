"""The served classifier's identity, as Triton reports it: ``parameters`` of temporal_classifier's model config.

``python -m export`` writes them into the classifier's configs (``config.pbtxt``, ``configs/*.pbtxt``) between two
marker lines; Triton returns them from ``get_model_config`` (gRPC or HTTP), so whoever talks to Triton learns which
checkpoint it serves without reading the model repository's files. The gateway compares the digest with its
Grad-CAM twin's.

The tracked configs carry the block of the bundled weights (``weights/classifier.pt``), so that ``make export``
with the defaults leaves them unchanged; exporting another checkpoint rewrites the block (only the block).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deepfake_core import constants as C
from deepfake_core.paths import REPO_ROOT

PREFIX = "served."
KEYS = (
    "version",
    "checkpoint_sha256",
    "checkpoint_path",
    "precision",
    "precision_reason",
    "threshold",
    "threshold_folded",
)
BEGIN = "# BEGIN served identity: written by `python -m export` (export/onnx_export.py); do not edit by hand"
END = "# END served identity"
_BLOCK = re.compile(rf"^{re.escape(BEGIN)}\n.*?^{re.escape(END)}\n?", re.MULTILINE | re.DOTALL)
UNTRAINED_DIGEST = ""  # string parameters cannot be null: the seeded untrained classifier has no checkpoint


@dataclass(frozen=True)
class ServedIdentity:
    """Which classifier Triton serves: its checkpoint (sha256; None for the untrained model), version, precision and
    decision threshold (0.5 once the checkpoint's own threshold is folded into the score, see export)."""

    version: str
    checkpoint_sha256: str | None
    precision: str
    threshold: float
    threshold_folded: float | None = None  # the checkpoint's threshold, folded into PROB_FAKE at export
    # where the checkpoint was when exported (a twin may find it there): relative to the checkout when inside it
    checkpoint_path: str | None = None
    precision_reason: str | None = None  # why that precision, e.g. "fp32: the INT8 gate refused (...)"

    def parameters(self) -> dict[str, str]:
        """The config ``parameters`` (all string values, keys prefixed ``served.``)."""
        values = {
            "version": self.version,
            "checkpoint_sha256": self.checkpoint_sha256 or UNTRAINED_DIGEST,
            "checkpoint_path": self.checkpoint_path or "",
            "precision": self.precision,
            "precision_reason": self.precision_reason or "",
            "threshold": repr(float(self.threshold)),
            "threshold_folded": "" if self.threshold_folded is None else repr(float(self.threshold_folded)),
        }
        return {PREFIX + k: values[k] for k in KEYS}

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> ServedIdentity | None:
        """The identity in a config's parameters (``{key: string_value}``); None when the config has none."""
        values = {k: parameters.get(PREFIX + k) for k in KEYS}
        if values["version"] is None or values["checkpoint_sha256"] is None:
            return None
        try:
            threshold = float(values["threshold"] or C.DECISION_THRESHOLD)
            folded = float(values["threshold_folded"]) if values["threshold_folded"] else None
        except ValueError:
            return None
        return cls(
            version=values["version"] or C.UNTRAINED_VERSION,
            checkpoint_sha256=values["checkpoint_sha256"] or None,
            precision=values["precision"] or "unknown",
            threshold=threshold,
            threshold_folded=folded,
            checkpoint_path=values["checkpoint_path"] or None,
            precision_reason=values["precision_reason"] or None,
        )


def portable_path(path: Path) -> str:
    """``path`` relative to the checkout when inside it (the tracked configs stay the same on every machine)."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(REPO_ROOT))
    except ValueError:
        return str(resolved)


def local_path(stored: str | None) -> Path | None:
    """Where a stored ``checkpoint_path`` is on this machine (relative ones are in the checkout)."""
    if not stored:
        return None
    path = Path(stored)
    return path if path.is_absolute() else REPO_ROOT / path


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def identity_block(identity: ServedIdentity) -> str:
    """The marked ``parameters`` lines of a config."""
    lines = [BEGIN]
    lines += [
        f"parameters {{ key: {_quote(k)} value {{ string_value: {_quote(v)} }} }}"
        for k, v in identity.parameters().items()
    ]
    return "\n".join([*lines, END]) + "\n"


def with_identity(config_text: str, identity: ServedIdentity) -> str:
    """``config_text`` with its identity block replaced (or appended); nothing else changes."""
    block = identity_block(identity)
    if _BLOCK.search(config_text):
        return _BLOCK.sub(lambda _: block, config_text, count=1)
    return config_text + ("" if config_text.endswith("\n") else "\n") + block
