"""The verdict policy for content credentials (documented in the README, "Content credentials").

A manifest that is valid (intact, the video's hash bindings match), trusted (its signer chains to a configured
trust anchor) and declares the video AI-generated (an action with ``digitalSourceType`` trainedAlgorithmicMedia or
compositeWithTrainedAlgorithmicMedia) makes the verdict FAKE with ``verdict_reason: "content_credentials"``; the
detector's ``probability_fake`` and its own class (``detector_class``) are still reported, and ``confidence`` is
null (the verdict does not come from the score). Anything else (no manifest, invalid, untrusted, not AI-generated,
or the override turned off) leaves the detector's verdict: ``verdict_reason: "detector"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from deepfake_core.ensemble_contract import Label

Reason = Literal["detector", "content_credentials"]


@dataclass(frozen=True)
class Verdict:
    """The class the answer reports, its confidence (percent; None for NO_FACE and when the credentials decide),
    why, and the detector's own class."""

    predicted_class: Label
    confidence: float | None
    reason: Reason
    detector_class: Label


def decide(
    detector_class: Label, detector_confidence: float | None, provenance: dict[str, Any], override: bool
) -> Verdict:
    """The answer's class: the detector's, unless trusted credentials declare the video AI-generated."""
    if override and provenance.get("valid") and provenance.get("trusted") and provenance.get("ai_generated"):
        return Verdict("FAKE", None, "content_credentials", detector_class)
    return Verdict(detector_class, detector_confidence, "detector", detector_class)
