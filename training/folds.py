"""End-to-end training judged by repeated stratified group k-fold: what the shipped model's recipe is chosen on.

``python -m training.folds --data ../shared/data/{dataset_clips,train,real_faces,faces} --out runs/r3 \\
    --init weights/classifier.pt --steps 300 --fold-minutes 20 [--repeats 1] [training.train's options]``

Per repeat ``r`` and fold ``f`` (``StratifiedGroupKFold(shuffle, random_state=r)`` over every clip with a face,
grouped by person / source footage / FaceForensics++ reciprocal pair, as ``training.research.crossval`` splits),
the whole classifier is trained on the other folds (``training.train``: self-blends of every real clip, labelled
fakes, fake/original pairs) and scored on the held-out clips the way the service scores them (served crops,
``--eval-frames`` evenly spaced frames, clips without a face at 0.5), plus one self-blended twin of each held-out
real clip. The baseline checkpoint (``--baseline``, default the bundled weights) is scored on the same units.

Everything resumes: each fold keeps ``r<r>f<f>.pt.state.pt`` (a later call with more ``--steps`` extends it), its
learning curve ``r<r>f<f>.curve.jsonl`` (step, train loss, held-out AUCs per family) and its last held-out scores
``r<r>f<f>.scores.json``. ``--report`` (also printed after each call) pools the out-of-fold scores per repeat:
AUC per family, accuracy at 0.5 and at the best threshold, for the trained model and the baseline, as markdown
(``report.md``) and JSON (``report.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake_core import constants as C
from deepfake_core.checkpoint import load_checkpoint
from deepfake_core.classifier import TemporalClassifier
from deepfake_core.paths import BUNDLED_CHECKPOINT
from deepfake_core.preprocess import normalize_crops
from training.augment import AugmentConfig
from training.datasets import Sample, discover_all
from training.faces_cache import DEFAULT_CACHE, FaceClip, FaceExtractor, cache_clips
from training.self_blend import draw_params, self_blend_clip
from training.train import ClipPool, TrainConfig, train
from training.validation import Clip, Unit, family_aucs, family_of, manifest_rows

__all__ = ["FoldData", "load_fold_data", "score_clips", "split_folds", "summarise"]

NO_FACE_SCORE = 0.5
SBI_SEED = 20261207  # the held-out self-blend of a real clip is the same draw in every fold and run


@dataclass
class FoldData:
    """Every usable clip: its sample, cached served crops and validation identity (family, domain, root)."""

    samples: list[Sample]
    clips: list[FaceClip]
    units: list[Clip]


def load_fold_data(folders: Sequence[Path], cache: Path, num_frames: int = C.NUM_FRAMES) -> FoldData:
    rows: dict[str, dict[str, str]] = {}
    for folder in folders:
        rows.update(manifest_rows(folder.parent) if (folder / "MANIFEST.csv").exists() else {})
    samples, clips, units = [], [], []
    for folder in folders:
        for sample, clip in cache_clips(discover_all([folder]), FaceExtractor(num_frames, cache), progress=False):
            row = rows.get(str(sample.path.resolve()))
            family, domain = family_of(folder.name, sample.label, sample.source, row)
            samples.append(sample)
            clips.append(clip)
            units.append(Clip(str(sample.path), sample.label, sample.group, folder.name, family, domain))
    return FoldData(samples, clips, units)


def split_folds(data: FoldData, folds: int, repeat: int) -> list[np.ndarray]:
    """Held-out indices of each fold of repeat ``repeat`` (never a group on both sides)."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.array([s.label for s in data.samples])
    groups = np.array([s.group for s in data.samples])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=repeat)
    return [val for _, val in splitter.split(np.zeros(len(labels)), labels, groups)]


def _frames(clip: FaceClip, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.unique(np.linspace(0, len(clip.crops) - 1, min(count, len(clip.crops))).round().astype(int))
    return clip.crops[idx], clip.present[idx], clip.landmarks[idx]


def held_out_views(clip: FaceClip, label: int, frames: int, index: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The crops scored for a held-out clip: ``clean`` and, for a real clip, its self-blended twin ``sbi0``."""
    crops, present, landmarks = _frames(clip, frames)
    views = {"clean": (crops, present)}
    if label == 0 and present.any():
        blended, _ = self_blend_clip(crops, landmarks, present, draw_params(np.random.default_rng([SBI_SEED, index])))
        views["sbi0"] = (blended, present)
    return views


@torch.no_grad()
def score_clips(model: TemporalClassifier, views: Sequence[tuple[np.ndarray, np.ndarray]], device: str) -> list[float]:
    """PROB_FAKE of each (crops uint8 [T,S,S,3], present [T]) as served; no face -> 0.5."""
    model.eval()
    out = []
    for crops, present in views:
        if not present.any():
            out.append(NO_FACE_SCORE)
            continue
        x = normalize_crops(crops)
        x[~present] = 0.0
        faces = torch.from_numpy(x)[None].to(device)
        mask = torch.from_numpy(present.astype(np.float32))[None].to(device)
        out.append(float(torch.sigmoid(model(faces, mask)[0].float())[0]))
    return out


def _score_units(
    model: TemporalClassifier, data: FoldData, held: np.ndarray, frames: int, device: str
) -> dict[str, dict[str, float]]:
    """path -> {variant: score} for the held-out clips."""
    keys, views = [], []
    for i in held:
        for variant, view in held_out_views(data.clips[i], data.samples[i].label, frames, int(i)).items():
            keys.append((data.units[i].path, variant))
            views.append(view)
    scores = score_clips(model, views, device)
    out: dict[str, dict[str, float]] = {}
    for (path, variant), score in zip(keys, scores, strict=True):
        out.setdefault(path, {})[variant] = score
    return out


def units_of(data: FoldData, scores: dict[str, dict[str, float]]) -> tuple[list[Unit], np.ndarray]:
    """Validation units (``training.validation``) of the scored clips and their scores."""
    units: list[Unit] = []
    values: list[float] = []
    for clip in data.units:
        for variant, score in scores.get(clip.path, {}).items():
            if variant == "clean":
                units.append((clip, "clean", clip.label, clip.family, clip.domain))
            else:
                units.append((clip, variant, 1, "self-blend", "self-blend"))
            values.append(score)
    return units, np.array(values)


def accuracies(units: Sequence[Unit], scores: np.ndarray) -> dict[str, dict[str, float]]:
    """Per family (fakes against the reals of their domain): accuracy at 0.5 and at the best threshold."""
    labels = np.array([u[2] for u in units])
    fams = np.array([u[3] for u in units])
    domains = np.array([u[4] for u in units])
    clean = np.array([u[1] == "clean" for u in units])
    roots = np.array([u[0].root for u in units])
    real = clean & (labels == 0)
    selections = {"dataset-style": clean & (roots == "dataset_clips"), "all clips": clean}
    selections["FF++ c23"] = clean & (domains == "ff++ c23")
    for fam in sorted(set(fams[labels == 1])):
        fakes = fams == fam
        reals = real if fam == "self-blend" else real & (domains == domains[fakes][0])
        selections[fam] = fakes | reals
    out = {}
    for name, sel in selections.items():
        y, s = labels[sel], scores[sel]
        if len(y) == 0:
            continue

        # Balanced accuracy: a family's few fakes against many reals must not be won by calling all REAL.
        def balanced(t: float, y: np.ndarray = y, s: np.ndarray = s) -> float:
            parts = [np.mean((s[y == k] >= t) == k) for k in (0, 1) if (y == k).any()]
            return float(np.mean(parts))

        candidates = np.unique(np.concatenate([s, [0.5]]))
        best = max(candidates, key=balanced)
        out[name] = {"acc@0.5": balanced(0.5), "best acc": balanced(float(best)), "best threshold": float(best)}
    return out


def balanced_platt(labels: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """``training.calibrate.fit_platt`` with both classes weighing the same (each clip of the rarer class counted
    as often as needed), so 0.5 lands at the balanced decision point."""
    from training.calibrate import fit_platt

    counts = np.bincount(labels.astype(int), minlength=2)
    repeat = np.where(labels == 1, max(1, round(counts[0] / max(counts[1], 1))), 1)
    repeat = np.where(labels == 0, max(1, round(counts[1] / max(counts[0], 1))), repeat)
    return fit_platt(np.repeat(labels, repeat), np.repeat(probs, repeat))


def _cross_calibrated(data: FoldData, per_fold: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The trained scores of each fold after a Platt map fitted on the other folds' clean scores (cross-fitted:
    what the served threshold does on data it was not fitted on)."""
    from training.calibrate import apply_platt

    label = {u.path: u.label for u in data.units}
    out: dict[str, dict[str, float]] = {}
    for f, scores in enumerate(per_fold):
        others = [(label[p], v["clean"]) for g, o in enumerate(per_fold) if g != f for p, v in o.items()]
        y, x = np.array([o[0] for o in others]), np.array([o[1] for o in others])
        a, b = balanced_platt(y, x)
        for path, variants in scores.items():
            out[path] = {k: float(apply_platt(np.array([v]), a, b)[0]) for k, v in variants.items()}
    return out


def summarise(data: FoldData, out: Path, repeats: int, folds: int) -> dict[str, Any]:
    """Pooled out-of-fold figures per repeat for the trained model (also cross-calibrated) and the baseline."""
    per_model: dict[str, list[dict[str, Any]]] = {"trained": [], "calibrated": [], "baseline": []}
    for r in range(repeats):
        pooled: dict[str, dict[str, dict[str, float]]] = {"trained": {}, "baseline": {}}
        trained_per_fold = []
        complete = True
        for f in range(folds):
            path = out / f"r{r}f{f}.scores.json"
            if not path.exists():
                complete = False
                break
            saved = json.loads(path.read_text())
            if "trained" not in saved:
                complete = False
                break
            trained_per_fold.append(saved["trained"])
            for name in pooled:
                pooled[name].update(saved[name])
        if not complete:
            continue
        pooled["calibrated"] = _cross_calibrated(data, trained_per_fold)
        for name, scores in pooled.items():
            units, values = units_of(data, scores)
            per_model[name].append({"auc": family_aucs(units, values), "accuracy": accuracies(units, values)})
    report: dict[str, Any] = {"repeats": len(per_model["trained"])}
    for name, runs in per_model.items():
        if not runs:
            continue
        report[name] = {
            key: {fam: _spread([run[key][fam] for run in runs if fam in run[key]]) for fam in runs[0][key]}
            for key in ("auc", "accuracy")
        }
    return report


def _spread(values: list[Any]) -> Any:
    if isinstance(values[0], dict):
        return {k: _spread([v[k] for v in values]) for k in values[0]}
    arr = np.array(values, dtype=float)
    return {"mean": float(np.nanmean(arr)), "min": float(np.nanmin(arr)), "max": float(np.nanmax(arr))}


def format_report(report: dict[str, Any], counts: dict[str, int]) -> str:
    if "trained" not in report:
        return "no complete repeat yet"
    fams = list(report["trained"]["auc"])
    lines = [
        f"repeats: {report['repeats']} (mean [min..max] over repeats)",
        "",
        "| family | n fakes | AUC baseline | AUC trained | acc@0.5 trained | acc@0.5 calibrated | best acc trained"
        " | acc@0.5 baseline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fam in fams:
        cells = []
        for name, key, sub in (
            ("baseline", "auc", None),
            ("trained", "auc", None),
            ("trained", "accuracy", "acc@0.5"),
            ("calibrated", "accuracy", "acc@0.5"),
            ("trained", "accuracy", "best acc"),
            ("baseline", "accuracy", "acc@0.5"),
        ):
            v = report.get(name, {}).get(key, {}).get(fam)
            v = v.get(sub) if (v is not None and sub) else v
            cells.append(f"{v['mean']:.3f} [{v['min']:.2f}..{v['max']:.2f}]" if v else "")
        lines.append(f"| {fam} | {counts.get(fam, '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fake_counts(data: FoldData) -> dict[str, int]:
    counts: dict[str, int] = {}
    for u in data.units:
        if u.label == 1:
            counts[u.family] = counts.get(u.family, 0) + 1
            if u.domain == "ff++ c23":
                counts["FF++ c23"] = counts.get("FF++ c23", 0) + 1
            if u.root == "dataset_clips":
                counts["dataset-style"] = counts.get("dataset-style", 0) + 1
        counts["all clips"] = counts.get("all clips", 0) + u.label
    counts["self-blend"] = sum(1 for u in data.units if u.label == 0)
    return counts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.folds", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder of the folds' checkpoints, curves and scores")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--only", nargs="*", default=[], help="train only these folds, e.g. r0f2 (default: all, in order)")
    p.add_argument("--steps", type=int, default=300, help="steps per fold (a fold already there is extended)")
    p.add_argument("--fold-minutes", type=float, default=None, help="stop a fold after this long (resumable)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-frames", type=int, default=16)
    p.add_argument("--baseline", type=Path, default=BUNDLED_CHECKPOINT)
    p.add_argument("--init", type=Path, default=BUNDLED_CHECKPOINT, help="checkpoint to start from ('' : ImageNet)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--ema", type=float, default=0.99)
    p.add_argument("--sbi-share", type=float, default=0.6)
    p.add_argument("--pair-share", type=float, default=0.35)
    p.add_argument("--consistency", type=float, default=1.0)
    p.add_argument("--consistency-clips", type=int, default=2)
    p.add_argument("--border", type=float, default=AugmentConfig.robust().border, help="share of clips banded")
    p.add_argument(
        "--match-padding",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a real clip and the labelled fake beside it share their black padding",
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--report", action="store_true", help="only print the report of what is there")
    return p.parse_args(argv)


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        steps=args.steps,
        batch=args.batch,
        frames=args.frames,
        lr=args.lr,
        warmup=args.warmup,
        sbi_share=args.sbi_share,
        seed=args.seed,
        save_every=args.save_every,
        arch={"width_mult": 1.0, "depth_mult": 1.0, "backbone": "effnet_lite0"},
        pretrained=not str(args.init),
        augment=dataclasses.replace(AugmentConfig.robust(), border=args.border),
        match_padding=args.match_padding,
        init=str(args.init) if str(args.init) else "",
        schedule="constant",
        ema=args.ema,
        pair_share=args.pair_share,
        consistency=args.consistency,
        consistency_clips=args.consistency_clips,
    )


def _trained_steps(state: Path) -> int:
    if not state.exists():
        return 0
    return int(torch.load(state, map_location="cpu", weights_only=False)["step"])


def run_fold(
    data: FoldData, held: np.ndarray, name: str, args: argparse.Namespace, baseline: TemporalClassifier
) -> None:
    out = args.out / f"{name}.pt"
    state = out.with_name(out.name + ".state.pt")
    if _trained_steps(state) >= args.steps:
        return
    held_set = set(held.tolist())
    train_items = [(data.samples[i], data.clips[i]) for i in range(len(data.samples)) if i not in held_set]
    scores_path = args.out / f"{name}.scores.json"
    saved = json.loads(scores_path.read_text()) if scores_path.exists() else {}
    curve_path = args.out / f"{name}.curve.jsonl"
    if "baseline" not in saved:
        saved["baseline"] = _score_units(baseline, data, held, args.eval_frames, args.device)
        units, values = units_of(data, saved["baseline"])
        with open(curve_path, "a") as f:
            f.write(json.dumps({"step": 0, "model": "baseline", "auc": family_aucs(units, values)}) + "\n")

    def on_eval(step: int, model: TemporalClassifier) -> None:
        t0 = time.perf_counter()
        scores = _score_units(model, data, held, args.eval_frames, args.device)
        units, values = units_of(data, scores)
        aucs = family_aucs(units, values)
        saved["trained"] = scores
        saved["step"] = step
        scores_path.write_text(json.dumps(saved))
        entry = {"step": step, "time": time.time(), "eval_s": time.perf_counter() - t0, "auc": aucs}
        with open(curve_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        headline = {k: round(aucs[k], 3) for k in ("dataset-style", "FF++ c23", "self-blend") if k in aucs}
        print(f"{name} step {step}: {headline}", file=sys.stderr, flush=True)

    cfg = _config(args)
    _, losses, timing = train(
        ClipPool(train_items),
        cfg,
        out,
        device=args.device,
        resume=True,
        progress=False,
        metadata={"training_data": f"training.folds {name}", "version": f"folds-{name}"},
        max_minutes=args.fold_minutes,
        on_eval=on_eval,
        eval_every=args.eval_every,
        keep_state=True,
    )
    with open(args.out / f"{name}.losses.json", "w") as f:
        json.dump(losses, f)
    print(f"{name}: {timing['steps']} steps in {timing['seconds']:.0f} s", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_fold_data(args.data, args.cache)
    print(f"{len(data.samples)} clips with cached faces", file=sys.stderr)
    if not args.report:
        baseline, _ = load_checkpoint(args.baseline)
        assert isinstance(baseline, TemporalClassifier)
        baseline = baseline.float().to(args.device)
        for r in range(args.repeats):
            for f, held in enumerate(split_folds(data, args.folds, r)):
                name = f"r{r}f{f}"
                if not args.only or name in args.only:
                    run_fold(data, held, name, args, baseline)
    report = summarise(data, args.out, args.repeats, args.folds)
    table = format_report(report, _fake_counts(data))
    print(table)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    (args.out / "report.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
