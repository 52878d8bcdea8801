"""Model selection by repeated stratified group k-fold on frozen features (``training.research.features``).

Never a group (a person, a source clip, a FaceForensics++ reciprocal pair) on both sides of a split. Per repeat,
every clip gets an out-of-fold score from a head trained on the other folds (clean + augmented copies of the
training clips, and self-blended twins of their real clips); AUCs are computed on those pooled scores and reported
as the mean and the spread (min..max) over repeats, with the per-fold spread of the headline.

Families (``family_of``): each FaceForensics++ method, DFDC, the talking-head / face-swap / lip-sync /
reenactment fakes of ``train``, and self-blends (the augmented self-blended twin of each held-out real clip). A
family's AUC compares its fakes with the held-out reals of its own domain (FF++ originals for FF++ methods; DFD
actors and the DFDC original for DFDC; the reals of ``train`` for its families; the blended clips' own originals
for self-blends). ``dataset-style``: every fake of ``dataset_clips`` against its reals, the headline.

Leave-one-dataset-out: train without DFDC and DFD (test DFDC fakes against DFD + DFDC reals), and without FF++
(test FF++ fakes against FF++ originals).

``python -m training.research.crossval --features DIR/dinov2_112.pt [--baseline scores.json] --out results/crossval``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluate import roc_auc
from training.validation import Clip, family_aucs, family_of, manifest_rows

__all__ = ["Clip", "Head", "eval_units", "family_of", "fit_head", "load_clips", "run_crossval"]


def load_clips(features: Path, data_root: Path | None) -> list[Clip]:
    """Clips of a features file (``training.research.features``), with families from the folders' manifests."""
    import torch

    state = torch.load(features, weights_only=False)
    rows = manifest_rows(data_root)
    clips: dict[str, Clip] = {}
    for item in state["items"]:
        path = item["path"]
        if path not in clips:
            row = rows.get(str(Path(path).resolve()))
            family, domain = family_of(item["root"], int(item["label"]), item["source"], row)
            clips[path] = Clip(path, int(item["label"]), item["group"], item["root"], family, domain)
        feats = item["feats"].float().numpy()
        present = item["present"].numpy()
        frames = feats[present] if present.any() else feats
        clips[path].frames[item["variant"]] = frames
        clips[path].variants[item["variant"]] = frames.mean(0)
    return [c for c in clips.values() if "clean" in c.variants]


@dataclass
class Head:
    """A linear head on standardised features: ``logit = (x - mean) / scale @ w + b``."""

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weight + self.bias

    def folded(self) -> tuple[np.ndarray, float]:
        """(w, b) with the standardisation folded in: ``logit = x @ w + b``."""
        w = self.weight / self.scale
        return w, float(self.bias - self.mean @ w)


def source_weights(kinds: Sequence[str]) -> np.ndarray:
    """Sample weights that give each source present ("real", "fake", "sbi") an equal share, scaled to mean 1."""
    kinds_arr = np.array(kinds)
    present = [k for k in ("real", "fake", "sbi") if (kinds_arr == k).any()]
    weight = np.zeros(len(kinds))
    for k in present:
        mask = kinds_arr == k
        weight[mask] = 1.0 / (len(present) * mask.sum())
    return weight * len(kinds)


def training_set(
    clips: Sequence[Clip], blends: int = 2, features: Callable[[Clip, str], np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, weight) of the training clips: clean + augmented copies, and self-blended twins of the reals.

    Weights balance three sources equally: reals, labelled fakes, self-blends (each group of sources sums to 1/3;
    with no labelled fakes, reals and self-blends get half each). ``features(clip, variant)``: a row of x (the
    variant's video-level features by default)."""
    feature = features or (lambda c, v: c.variants[v])
    xs: list[np.ndarray] = []
    ys: list[int] = []
    kinds: list[str] = []
    for c in clips:
        for variant in ("clean", "aug"):
            if variant in c.variants:
                xs.append(feature(c, variant))
                ys.append(c.label)
                kinds.append("real" if c.label == 0 else "fake")
        if c.label == 0:
            for i in range(blends):
                if f"sbi{i}" in c.variants:
                    xs.append(feature(c, f"sbi{i}"))
                    ys.append(1)
                    kinds.append("sbi")
    return np.stack(xs), np.array(ys), source_weights(kinds)


def fit_head(x: np.ndarray, y: np.ndarray, weight: np.ndarray, c: float = 0.05) -> Head:
    """L2 logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(0)
    scale = x.std(0) + 1e-6
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit((x - mean) / scale, y, sample_weight=weight)
    return Head(mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]))


def eval_units(clips: Sequence[Clip]) -> list[tuple[Clip, str, int, str, str]]:
    """(clip, variant, label, family, domain) scored per held-out clip: the clean clip, and for a real clip its
    first self-blended twin (family "self-blend", compared with the held-out reals)."""
    out = []
    for c in clips:
        out.append((c, "clean", c.label, c.family, c.domain))
        if c.label == 0 and "sbi0" in c.variants:
            out.append((c, "sbi0", 1, "self-blend", "self-blend"))
    return out


def run_crossval(
    clips: Sequence[Clip],
    scorer_factory: Callable[[Sequence[Clip]], Callable[[Clip, str], float]] | None,
    folds: int = 5,
    repeats: int = 3,
    fixed_scores: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Repeated stratified group k-fold; ``scorer_factory(train_clips)`` returns ``score(clip, variant)``.
    ``fixed_scores`` (path -> score of a fixed model, clean clips only) evaluates an already trained model on the
    same units instead."""
    from sklearn.model_selection import StratifiedGroupKFold

    units = eval_units(clips)
    labels = np.array([c.label for c in clips])
    groups = np.array([c.group for c in clips])
    per_repeat: list[dict[str, float]] = []
    fold_headline: list[float] = []
    for r in range(repeats):
        scores = np.full(len(units), np.nan)
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=r)
        for train_idx, val_idx in splitter.split(np.zeros(len(clips)), labels, groups):
            val = {clips[i].path for i in val_idx}
            if fixed_scores is not None:
                score = lambda c, v: fixed_scores.get(c.path, 0.5) if v == "clean" else np.nan  # noqa: E731
            else:
                assert scorer_factory is not None
                score = scorer_factory([clips[i] for i in train_idx])
            fold_units = []
            for j, u in enumerate(units):
                if u[0].path in val:
                    scores[j] = score(u[0], u[1])
                    fold_units.append(j)
            sub = [units[j] for j in fold_units]
            fold_headline.append(family_aucs(sub, scores[fold_units]).get("dataset-style", float("nan")))
        keep = ~np.isnan(scores)
        per_repeat.append(family_aucs([u for u, k in zip(units, keep, strict=True) if k], scores[keep]))
    keys = per_repeat[0].keys()
    summary: dict[str, Any] = {
        k: {
            "mean": float(np.nanmean([p[k] for p in per_repeat])),
            "min": float(np.nanmin([p[k] for p in per_repeat])),
            "max": float(np.nanmax([p[k] for p in per_repeat])),
        }
        for k in keys
    }
    finite = [f for f in fold_headline if np.isfinite(f)]
    summary["dataset-style per fold"] = {
        "mean": float(np.mean(finite)) if finite else float("nan"),
        "min": float(np.min(finite)) if finite else float("nan"),
        "max": float(np.max(finite)) if finite else float("nan"),
        "folds": len(finite),
    }
    summary["counts"] = _counts(units)
    return summary


def _counts(units: list[tuple[Clip, str, int, str, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for u in units:
        out[u[3]] = out.get(u[3], 0) + 1
    return out


def leave_one_dataset_out(
    clips: Sequence[Clip], scorer_factory: Callable[[Sequence[Clip]], Callable[[Clip, str], float]]
) -> dict[str, float]:
    """AUC on DFDC trained without DFDC/DFD, and on FF++ trained without FF++."""
    out = {}
    for name, domain in (("DFDC (trained without DFDC, DFD)", "dfd+dfdc"), ("FF++ (trained without FF++)", "ff++")):
        test = [c for c in clips if c.domain.startswith(domain)]
        test_groups = {c.group for c in test}
        train = [c for c in clips if c.group not in test_groups]
        score = scorer_factory(train)
        out[name] = roc_auc(np.array([c.label for c in test]), np.array([score(c, "clean") for c in test]))
    return out


def linear_probe(c: float = 0.05, blends: int = 2) -> Callable[[Sequence[Clip]], Callable[[Clip, str], float]]:
    """The scorer factory of a logistic-regression head on video-mean features."""

    def factory(train: Sequence[Clip]) -> Callable[[Clip, str], float]:
        head = fit_head(*training_set(train, blends), c=c)
        return lambda clip, variant: float(head.logits(clip.variants[variant][None])[0])

    return factory


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per metric, one column per model (mean [min..max] over repeats)."""
    models = list(results)
    rows = [k for k in results[models[0]] if k not in ("counts",)]
    counts = results[models[0]].get("counts", {})
    lines = ["| | n | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for row in rows:
        cells = []
        for m in models:
            v = results[m].get(row)
            if isinstance(v, dict):
                cells.append(f"{v['mean']:.3f} [{v['min']:.2f}..{v['max']:.2f}]")
            elif isinstance(v, float):
                cells.append(f"{v:.3f}")
            else:
                cells.append("")
        lines.append(f"| {row} | {counts.get(row, '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.research.crossval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", nargs="+", type=Path, required=True, help="training.research.features outputs")
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding the datasets' MANIFEST.csv")
    parser.add_argument("--baseline", type=Path, default=None, help="JSON {path: score} of a fixed model")
    parser.add_argument("--c", type=float, nargs="+", default=[0.05])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/crossval"))
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    clips: list[Clip] = []
    for features in args.features:
        clips = load_clips(features, args.data_root)
        for c in args.c:
            name = f"{features.stem} C={c}"
            results[name] = run_crossval(clips, linear_probe(c), args.folds, args.repeats)
            results[name].update(leave_one_dataset_out(clips, linear_probe(c)))
            print(name, json.dumps(results[name]["dataset-style"]), flush=True)
    if args.baseline:
        fixed = json.loads(args.baseline.read_text())
        results[args.baseline.stem] = run_crossval(clips, None, args.folds, args.repeats, fixed_scores=fixed)
    table = format_table(results)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "crossval.json").write_text(json.dumps(results, indent=1))
    (args.out / "crossval.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
