"""Evaluation metrics on constructed cases with known answers; the evaluation command end to end; dataset
layouts; the opt-in checks on the shared data folder."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_core.checkpoint import load_checkpoint, save_checkpoint
from deepfake_core.classifier import untrained_classifier
from tests.media import face_video
from training import evaluate
from training.datasets import discover, group_split, parse_panel
from training.evaluate import compute_metrics, equal_error_rate, pick_threshold, roc_auc

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
PERFECT = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
SHARED_TRAIN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "train"


def test_perfect_scorer() -> None:
    m = compute_metrics(LABELS, PERFECT, 0.5)
    assert m.auc == 1.0 and m.eer == 0.0 and m.average_precision == 1.0
    assert m.accuracy == 1.0 and m.precision == 1.0 and m.recall == 1.0 and m.f1 == 1.0
    assert m.confusion == [[4, 0], [0, 4]]
    assert 0.5 >= pick_threshold(LABELS, PERFECT) > 0.4


def test_inverted_scorer() -> None:
    m = compute_metrics(LABELS, 1.0 - PERFECT, 0.5)
    assert m.auc == 0.0 and m.eer == 1.0
    assert m.accuracy == 0.0 and m.confusion == [[0, 4], [4, 0]] and m.f1 == 0.0


def test_known_confusion_matrix_and_rates() -> None:
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.2, 0.6, 0.7, 0.9, 0.95])
    m = compute_metrics(labels, scores, 0.5)
    # real: 3 below (TN), 2 above (FP); fake: 1 below (FN), 4 above (TP)
    assert m.confusion == [[3, 2], [1, 4]]
    assert m.accuracy == pytest.approx(0.7) and m.precision == pytest.approx(4 / 6)
    assert m.recall == pytest.approx(0.8) and m.f1 == pytest.approx(2 * (4 / 6) * 0.8 / (4 / 6 + 0.8))
    assert m.balanced_accuracy == pytest.approx(0.7)
    expected_ll = -np.mean(labels * np.log(scores) + (1 - labels) * np.log(1 - scores))
    assert m.log_loss == pytest.approx(expected_ll)
    # AUC by counting pairs: fake > real in 19 of 25 pairs, 2 ties (0.7 vs 0.7, 0.2 vs 0.2) count half.
    pairs = [(f > r) + 0.5 * (f == r) for f in scores[labels == 1] for r in scores[labels == 0]]
    assert m.auc == pytest.approx(np.mean(pairs))


def test_constant_scorer_is_chance() -> None:
    scores = np.full(8, 0.5)
    assert roc_auc(LABELS, scores) == 0.5 and equal_error_rate(LABELS, scores) == pytest.approx(0.5)
    assert compute_metrics(LABELS, scores, 0.5).confusion == [[0, 4], [0, 4]]  # >= threshold is fake


def test_eer_interpolates() -> None:
    # One real scored above one fake out of 4 each: EER 0.25.
    scores = np.array([0.1, 0.2, 0.3, 0.75, 0.6, 0.7, 0.8, 0.9])
    assert equal_error_rate(LABELS, scores) == pytest.approx(0.25)


def test_one_class_only_gives_nan_auc() -> None:
    m = compute_metrics(np.zeros(3), np.array([0.1, 0.2, 0.9]), 0.5)
    assert math.isnan(m.auc) and m.confusion == [[2, 1], [0, 0]]


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    (root / "real").mkdir()
    (root / "fake").mkdir()
    face_video(root / "real" / "r1.mp4", width=320, height=240, seconds=0.6)
    face_video(root / "fake" / "f1.mp4", width=256, height=256, seconds=0.6)
    return root


def test_evaluate_command(labelled_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch = {"width_mult": 0.25, "depth_mult": 0.34, "temporal_dim": 64}
    ckpt = save_checkpoint(tmp_path / "m.pt", untrained_classifier(arch), {"num_frames": 4}, half=True)
    out = tmp_path / "eval"
    argv = ["--data", str(labelled_folder), "--checkpoint", str(ckpt), "--cache", str(tmp_path / "cache")]
    assert evaluate.main([*argv, "--out", str(out), "--pick-threshold", "--write-checkpoint"]) == 0
    text = capsys.readouterr().out
    for word in ("AUC", "EER", "log loss", "accuracy", "precision", "recall", "F1", "confusion matrix"):
        assert word in text
    rows = list(csv.DictReader((out / "per_video.csv").read_text().splitlines()))
    assert sorted(r["label"] for r in rows) == ["0", "1"] and all(r["frames"] == "4" for r in rows)
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "metrics.json").read_text())
    # Two videos and a threshold picked on them: they are separated, whatever the (untrained) scores are.
    assert report["metrics"]["auc"] in (0.0, 1.0) and report["metrics"]["accuracy"] in (0.5, 1.0)
    _, meta = load_checkpoint(ckpt)
    assert meta["threshold"] == pytest.approx(report["metrics"]["threshold"])
    assert meta["metrics"]["validation"]["count"] == 2
    raw = torch.load(ckpt, weights_only=True)["state_dict"]
    assert all(t.dtype == torch.float16 for t in raw.values() if t.is_floating_point())  # stays float16
    # The stored threshold is used by default the next time; --self-blend adds a blended fake per real video.
    assert evaluate.main([*argv, "--out", str(out), "--self-blend"]) == 0
    assert f"threshold {meta['threshold']:.4f}" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "per_video.csv").read_text().splitlines()))
    assert sorted((r["source"], r["label"]) for r in rows) == [("fake", "1"), ("real", "0"), ("self-blend", "1")]


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_dataset_layouts(tmp_path: Path) -> None:
    ff = tmp_path / "ff"
    _touch(ff / "original_sequences/youtube/c23/videos/033.mp4")
    _touch(ff / "manipulated_sequences/Deepfakes/c23/videos/033_097.mp4")
    _touch(ff / "manipulated_sequences/Face2Face/c23/videos/033_097.mp4")
    got = sorted((s.label, s.group, s.source) for s in discover(ff))
    assert got == [(0, "033", "ff++/original"), (1, "033", "ff++/Deepfakes"), (1, "033", "ff++/Face2Face")]

    dfdc = tmp_path / "dfdc"
    _touch(dfdc / "part0/a.mp4")
    _touch(dfdc / "part0/b.mp4")
    (dfdc / "part0/metadata.json").write_text(
        json.dumps({"a.mp4": {"label": "REAL"}, "b.mp4": {"label": "FAKE", "original": "a.mp4"}})
    )
    assert sorted((s.path.name, s.label, s.group) for s in discover(dfdc)) == [("a.mp4", 0, "a"), ("b.mp4", 1, "a")]

    celeb = tmp_path / "celeb"
    _touch(celeb / "Celeb-real/id0_0000.mp4")
    _touch(celeb / "Celeb-synthesis/id0_id1_0000.mp4")
    (celeb / "List_of_testing_videos.txt").write_text("1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n")
    assert sorted((s.label, s.group) for s in discover(celeb)) == [(0, "id0"), (1, "id0")]

    plain = tmp_path / "plain"
    _touch(plain / "real/x.mp4")
    _touch(plain / "fake/sub/y.jpg")
    assert sorted((s.path.name, s.label) for s in discover(plain)) == [("x.mp4", 0), ("y.jpg", 1)]

    manifest = tmp_path / "manifest"
    (manifest / "MANIFEST.csv").parent.mkdir()
    (manifest / "MANIFEST.csv").write_text(
        "path,label,method,layout,pair_group,identity\n"
        "real/a.mp4,real,,single,g1,A\n"
        'fake/b.mp4,fake,faceswap,"side-by-side 2 panels: LEFT=original (real), RIGHT=swapped (fake)",g1,A\n'
        "unknown/c.mp4,unknown,unknown,single,,C\n"
    )
    got_m = [(s.path.name, s.label, s.group, s.panel) for s in discover(manifest)]
    assert got_m == [("a.mp4", 0, "g1", None), ("b.mp4", 1, "g1", (1, 2))]


def test_parse_panel() -> None:
    assert parse_panel("single") is None
    layout = "side-by-side 3 panels: LEFT=static reference image, MIDDLE=generated (fake), RIGHT=driving"
    assert parse_panel(layout) == (1, 3)
    with pytest.raises(ValueError):
        parse_panel("side-by-side 2 panels: LEFT=a, RIGHT=b")


def test_group_split_keeps_groups_together(tmp_path: Path) -> None:
    from training.datasets import Sample

    samples = [Sample(tmp_path / f"{g}_{i}.mp4", i % 2, f"g{g}", "x") for g in range(20) for i in range(3)]
    train, val = group_split(samples, 0.3, seed=1)
    assert {s.group for s in train}.isdisjoint({s.group for s in val})
    assert len(train) + len(val) == len(samples) and 0.2 < len(val) / len(samples) < 0.4
    assert group_split(samples, 0.3, seed=1) == (train, val)


@pytest.mark.shared_data
def test_shared_manifest_layout() -> None:
    if not (SHARED_TRAIN / "MANIFEST.csv").exists():
        pytest.skip(f"shared training data absent ({SHARED_TRAIN}); opt-in test")
    samples = discover(SHARED_TRAIN)
    assert samples and all(s.label in (0, 1) for s in samples)  # "unknown" rows left out
    composites = [s for s in samples if s.panel is not None]
    assert composites and all(s.label == 1 for s in composites)
    train, val = group_split(samples, 0.4, seed=1234)
    assert {s.group for s in train}.isdisjoint({s.group for s in val})
