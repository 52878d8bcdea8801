"""training.folds and training.robustness end to end on generated clips: group k-fold splits, per-fold training
that resumes and extends, baseline and trained scores of the held-out clips, the pooled report with its
cross-fitted calibration, learning curves, and the re-encode / grey-level measurements."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepfake_core.checkpoint import save_checkpoint
from deepfake_core.classifier import build_classifier
from tests.media import face_video
from training import folds, robustness
from training.curves import plot_curves
from training.folds import balanced_platt, load_fold_data, split_folds

TINY = {"width_mult": 0.25, "depth_mult": 0.34, "dropout": 0.0, "drop_path": 0.0, "temporal_dim": 64}
SIZES = ((320, 240), (288, 288), (360, 240), (240, 320), (320, 256), (256, 320))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``dataset_clips``-style folder: three real and three fake clips, each its own group."""
    root = tmp_path_factory.mktemp("folds") / "dataset_clips"
    for i, (w, h) in enumerate(SIZES):
        kind = "real" if i < 3 else "fake"
        (root / kind).mkdir(parents=True, exist_ok=True)
        face_video(root / kind / f"clip{i}.mp4", width=w, height=h, seconds=0.6, fps=10)
    return root


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny classifier whose scores depend on its input: freshly built, its batch norms' running statistics
    (mean 0, variance 1) shrink the activations to about 1e-8 by the last block, so every clip would score the
    same; one pass in training mode on random frames sets them to what the layers really see."""
    torch.manual_seed(0)
    model = build_classifier({**TINY, "backbone": "effnet_lite0"})
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one batch sets the statistics
    model.train()
    with torch.no_grad():
        model.frame_encoder(torch.rand(16, 3, 224, 224))
    for norm in norms:
        norm.momentum = 0.1
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(path, model.eval(), {"version": "tiny"})


def test_splits_keep_groups_apart_and_cover_every_clip(dataset: Path, tmp_path: Path) -> None:
    data = load_fold_data([dataset], tmp_path / "cache", num_frames=4)
    assert len(data.samples) == 6 and {u.family for u in data.units} == {"real", "FF++ c23 other"}
    held = split_folds(data, 3, repeat=0)
    assert sorted(np.concatenate(held).tolist()) == list(range(6))
    for part in held:
        labels = {data.samples[i].label for i in part}
        assert labels == {0, 1}  # stratified: each fold holds reals and fakes
    assert [p.tolist() for p in split_folds(data, 3, repeat=0)] == [p.tolist() for p in held]


def test_balanced_platt_puts_the_threshold_between_the_classes() -> None:
    labels = np.array([0] * 30 + [1] * 3)
    probs = np.concatenate([np.full(30, 0.30), np.full(3, 0.40)])
    from training.calibrate import apply_platt

    a, b = balanced_platt(labels, probs)
    calibrated = apply_platt(probs, a, b)
    assert calibrated[:30].max() < 0.5 < calibrated[30:].min()


def test_folds_train_score_resume_and_report(dataset: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = [
        "--data", str(dataset), "--out", str(out), "--cache", str(tmp_path / "cache"), "--folds", "3",
        "--batch", "2", "--frames", "2", "--eval-every", "1", "--eval-frames", "3", "--save-every", "1",
        "--init", str(tiny_checkpoint), "--baseline", str(tiny_checkpoint), "--pair-share", "0",
    ]  # fmt: skip
    assert folds.main([*common, "--steps", "2"]) == 0
    for f in range(3):
        curve = [json.loads(line) for line in (out / f"r0f{f}.curve.jsonl").read_text().splitlines()]
        assert [e["step"] for e in curve] == [0, 1, 2] and curve[0]["model"] == "baseline"
        scores = json.loads((out / f"r0f{f}.scores.json").read_text())
        assert scores["step"] == 2 and set(scores["trained"]) == set(scores["baseline"])
        for variants in scores["trained"].values():
            assert "clean" in variants and all(0.0 <= v <= 1.0 for v in variants.values())
    # the same clips start equal: the trained model began from the baseline checkpoint, then moved
    report = json.loads((out / "report.json").read_text())
    assert report["repeats"] == 1 and {"trained", "calibrated", "baseline"} <= set(report)
    assert "dataset-style" in report["trained"]["auc"] and "acc@0.5" in report["calibrated"]["accuracy"]["all clips"]
    assert "| dataset-style |" in (out / "report.md").read_text()
    # a longer call extends each fold from its kept state instead of starting again
    assert folds.main([*common, "--steps", "3", "--only", "r0f1"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "r0f1.curve.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]
    assert len(json.loads((out / "r0f1.losses.json").read_text())) == 3
    png = plot_curves(out, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # robustness: each clip scored by its own fold's model, re-encoded and a grey level off
    assert robustness.main(
        ["--data", str(dataset), "--folds-dir", str(out), "--folds", "3", "--clips", "2", "--crf", "40",
         "--frames", "3", "--cache", str(tmp_path / "cache")]
    ) == 0  # fmt: skip
    result = json.loads((out / "robustness.json").read_text())["trained (its fold's model)"]
    assert result["clips"] == 4 and result["real"] == 2
    for key in ("crf40", "+1", "-1", "+-1 noise"):
        assert 0.0 <= result[key]["mean |delta|"] <= result[key]["max |delta|"] <= 1.0
        assert 0 <= result[key]["flips"] <= 4
    assert any(row["crf40"] != row["score"] for row in result["rows"])  # the re-encode was really scored

    # a run in progress (fold 2 not trained yet): its held-out clips are left out, the others measured
    (out / "r0f2.pt").rename(tmp_path / "r0f2.pt")
    robust = ["--data", str(dataset), "--folds-dir", str(out), "--folds", "3", "--clips", "3", "--crf", "40"]
    assert robustness.main([*robust, "--frames", "3", "--cache", str(tmp_path / "cache")]) == 0
    partial = json.loads((out / "robustness.json").read_text())["trained (its fold's model)"]
    data = load_fold_data([dataset], tmp_path / "cache", num_frames=4)
    fold2 = {str(data.samples[i].path) for i in split_folds(data, 3, repeat=0)[2]}
    assert len(fold2) == 2 and partial["clips"] == 4  # 3 of each asked: all of folds 0 and 1, none of fold 2
    assert not fold2 & {row["path"] for row in partial["rows"]}


def test_grey_level_views_move_every_face_pixel_by_one_at_most() -> None:
    crops = np.full((2, 8, 8, 3), 100, np.uint8)
    present = np.array([True, False])
    views = robustness.grey_level_views(crops, present, seed=0)
    assert (views["+1"][0] == 101).all() and (views["-1"][0] == 99).all()
    assert np.abs(views["+-1 noise"][0].astype(int) - 100).max() == 1
    assert all(not v[1].any() for v in views.values())  # no face, no pixels
