"""Where things are in a checkout: the one definition of each path the code looks for."""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLED_CHECKPOINT", "MODEL_REPOSITORY", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = REPO_ROOT / "model_repository"  # the served Triton repository (``make export`` fills it)
# The classifier weights shipped in the repository (docs/MODEL_CARD.md): `make export` serves them and the gateway's
# Grad-CAM twin loads them unless told otherwise.
BUNDLED_CHECKPOINT = REPO_ROOT / "weights" / "classifier.pt"
