"""``ServedModel``: the one handle on the model a prediction uses (the Grad-CAM twin and the reported identity).

A prediction takes one ``ModelState`` at its start and keeps it to the end; the twin follower swaps the whole state
at once (``swap``), so no request ever sees the engine of one checkpoint with the identity of another. Nothing else
assigns model state anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.services.inference.gradcam import GradCamEngine
from gateway.services.prediction.model_info import ModelInfo


@dataclass(frozen=True)
class ModelState:
    """The Grad-CAM engine of the twin, the twin checkpoint's metadata, and the model info reported with it."""

    gradcam: GradCamEngine
    info: ModelInfo
    twin_metadata: dict[str, Any] = field(default_factory=dict)


class ServedModel:
    """Holds the current ``ModelState``; ``swap`` replaces it in one assignment."""

    def __init__(self, state: ModelState) -> None:
        self._state = state

    @property
    def state(self) -> ModelState:
        """The current state: read it once per prediction."""
        return self._state

    @property
    def info(self) -> ModelInfo:
        return self._state.info

    @property
    def gradcam(self) -> GradCamEngine:
        return self._state.gradcam

    def swap(self, state: ModelState) -> ModelState:
        """Make ``state`` current; returns the one it replaced (predictions that took it finish with it)."""
        previous, self._state = self._state, state
        return previous
