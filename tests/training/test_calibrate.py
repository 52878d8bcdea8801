"""Platt scaling: fitted on a known miscalibration, folded into the model exactly, ranking and no-face kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfake_core.classifier import ExportWrapper, untrained_classifier
from training.calibrate import apply_platt, fit_platt, fold_platt
from training.evaluate import roc_auc


def test_fit_recovers_a_known_overconfidence() -> None:
    """Scores made over-confident by a factor 4 and shifted are mapped back near the true scale."""
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0.0, 1.5, 4000)
    labels = (rng.uniform(size=4000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    overconfident = 1 / (1 + np.exp(-(4.0 * true_logit + 3.0)))
    a, b = fit_platt(labels, overconfident, prior=0.0)
    assert a == pytest.approx(0.25, abs=0.03) and b == pytest.approx(-0.75, abs=0.12)
    calibrated = apply_platt(overconfident, a, b)
    assert roc_auc(labels, calibrated) == pytest.approx(roc_auc(labels, overconfident))  # ranking unchanged

    def log_loss(p: np.ndarray) -> float:
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))

    assert log_loss(calibrated) < 0.8 * log_loss(overconfident)
    with pytest.raises(ValueError, match="both real and fake"):
        fit_platt(np.zeros(5), np.full(5, 0.3))


def test_folding_changes_the_served_score_exactly_as_fitted() -> None:
    model = untrained_classifier({"width_mult": 0.25, "depth_mult": 0.34, "temporal_dim": 64}).eval()
    faces = torch.randn(3, 4, 3, 224, 224)
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    with torch.no_grad():
        before = ExportWrapper(model)(faces, mask)[0][:, 0].numpy()
        fold_platt(model, 0.3, -1.2)
        after = ExportWrapper(model)(faces, mask)[0][:, 0].numpy()
    np.testing.assert_allclose(after[:2], apply_platt(before[:2], 0.3, -1.2), rtol=1e-4, atol=1e-6)
    assert after[2] == 0.5  # no face: still exactly 0.5


def test_written_into_a_float16_checkpoint(tmp_path) -> None:
    """``evaluate --calibrate --write-checkpoint``'s write: the checkpoint stays float16, its metadata records the
    fit, and the loaded model serves the calibrated score."""
    from deepfake_core.checkpoint import load_checkpoint, save_checkpoint
    from training.evaluate import write_checkpoint_metadata

    model = untrained_classifier({"width_mult": 0.25, "depth_mult": 0.34, "temporal_dim": 64}).eval()
    ckpt = save_checkpoint(tmp_path / "m.pt", model, {"version": "c"}, half=True)
    before_model, _ = load_checkpoint(ckpt)
    faces, mask = torch.randn(2, 3, 3, 224, 224), torch.ones(2, 3)
    with torch.no_grad():
        before = ExportWrapper(before_model.eval())(faces, mask)[0][:, 0].numpy()
    calibration = {"platt_a": 0.5, "platt_b": -1.0, "fitted_on": "val"}
    write_checkpoint_metadata(ckpt, {"threshold": 0.3, "metrics": {"calibration": calibration}}, (0.5, -1.0))
    after_model, meta = load_checkpoint(ckpt)
    assert torch.load(ckpt, weights_only=True)["state_dict"]["video_head.weight"].dtype == torch.float16
    assert meta["threshold"] == 0.3 and meta["metrics"]["calibration"] == calibration
    with torch.no_grad():
        after = ExportWrapper(after_model.eval())(faces, mask)[0][:, 0].numpy()
    np.testing.assert_allclose(after, apply_platt(before, 0.5, -1.0), atol=2e-3)
