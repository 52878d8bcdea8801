"""Platt scaling of the video score, folded into the classifier's last layer.

A model trained on a few clips is over-confident (video probabilities near 0 or 1 whatever the truth), so a
threshold picked for balanced accuracy can land at 0.9997 and the reported confidence means little.
``fit_platt`` fits ``p' = sigmoid(a * logit(p) + b)`` on labelled validation scores (maximum likelihood with a weak
prior towards the identity, the data being small); ``fold_platt`` writes it into ``video_head`` (scaled weights,
shifted bias), so Triton, the twin and the ONNX export all serve calibrated scores with nothing else changed.
The mapping is monotonic: AUC, EER and the ranking stay as they were; a video without a face still gets exactly
0.5 (its logit is forced to 0 after the head).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch only where the model is touched: evaluation through Triton needs none
    from deepfake_core.classifier import Classifier

__all__ = ["apply_platt", "fit_frame_scale", "fit_platt", "fold_platt"]

_EPS = 1e-7


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


def apply_platt(probs: np.ndarray, a: float, b: float) -> np.ndarray:
    """The calibrated probabilities ``sigmoid(a * logit(p) + b)``."""
    return 1.0 / (1.0 + np.exp(-(a * _logit(probs) + b)))


def fit_platt(labels: np.ndarray, probs: np.ndarray, prior: float = 1e-2) -> tuple[float, float]:
    """``(a, b)`` maximising the likelihood of ``labels`` under ``sigmoid(a * logit(p) + b)`` minus
    ``prior * ((a - 1)^2 + b^2)`` (the prior keeps two parameters sane on tens of videos)."""
    from scipy.optimize import minimize

    y = np.asarray(labels, dtype=np.float64)
    x = _logit(probs)
    if y.min() == y.max():
        raise ValueError("calibration needs both real and fake videos")
    identity = np.array([1.0, 0.0])

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] * x + theta[1]
        nll = float(np.sum(np.logaddexp(0.0, z) - y * z)) + prior * float(np.sum((theta - identity) ** 2))
        residual = 1.0 / (1.0 + np.exp(-z)) - y
        grad = np.array([residual @ x, residual.sum()]) + 2 * prior * (theta - identity)
        return nll, grad

    result = minimize(loss, identity, jac=True, method="L-BFGS-B")
    return float(result.x[0]), float(result.x[1])


def fold_platt(model: Classifier, a: float, b: float) -> None:
    """Make ``model``'s video logit ``a * logit + b`` (in place, exact up to float rounding)."""
    model.affine_logits(a, b)


def fit_frame_scale(video_logits: np.ndarray, mean_frame_logits: np.ndarray) -> tuple[float, float]:
    """(a, b) with ``a * mean_frame_logit + b ~ video_logit`` (least squares over videos): frame scores moved onto
    the video score's scale, so a chart of frame scores agrees with the verdict in the usual case."""
    design = np.stack([mean_frame_logits, np.ones_like(mean_frame_logits)], 1)
    (a, b), *_ = np.linalg.lstsq(design, video_logits, rcond=None)
    return float(a), float(b)
