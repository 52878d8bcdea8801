"""Video-level evaluation of the served pipeline on a labelled folder; picks and stores the decision threshold.

``python -m training.evaluate --data DIR [--checkpoint CKPT] [--triton HOST:PORT] [--split CKPT.split.json]``

Scores every video the way the service does: either through Triton (``--triton``: the ``deepfake_detector``
ensemble, via ``clients.triton_client.DetectorClient``) or through the PyTorch twin on crops made by the same
shared pipeline (``training.faces_cache.FaceExtractor.faces``: ``sample_video`` -> MTCNN cascade on the served ONNX
nets -> ``analysed_tracks`` -> ``crop_faces``), with the checkpoint's ``num_frames`` frames. Like the ensemble, the
twin scores every analysed face (up to ``MAX_FACES``, most prominent first) and the video's score is its deciding
face's (``deepfake_core.face_verdicts.video_verdict``: the highest), so both give the same numbers up to float
rounding. Videos without any face score 0.5, as served.

Prints AUC, accuracy, precision, recall, F1, EER, log loss, average precision and the confusion matrix at the
threshold (``--threshold``, else the checkpoint's); writes ``roc.png`` and ``per_video.csv`` under ``--out``.
``--pick-threshold`` chooses the threshold on this data (maximum balanced accuracy, i.e. Youden's J, placed
midway between neighbouring scores); ``--write-checkpoint`` stores it and the metrics in the checkpoint's
metadata, where the gateway and the exported ``metadata.json`` read it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_core import constants as C

__all__ = ["Metrics", "compute_metrics", "equal_error_rate", "pick_threshold", "roc_auc"]

EPS = 1e-6


@dataclass
class Metrics:
    auc: float
    accuracy: float
    balanced_accuracy: float
    precision: float
    recall: float
    f1: float
    eer: float
    log_loss: float
    average_precision: float
    threshold: float
    confusion: list[list[int]]  # [[TN, FP], [FN, TP]] (rows: true real, true fake)
    count: int
    positives: int

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when one class is missing."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with the rule ``score >= threshold`` means fake."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64))
    return fpr, tpr, thresholds


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The rate where false positive rate equals false negative rate (linear interpolation on the ROC)."""
    fpr, tpr, _ = roc_points(labels, scores)
    fnr = 1.0 - tpr
    diff = fpr - fnr
    i = int(np.flatnonzero(diff >= 0)[0])  # fpr rises from 0 and fnr falls to 0: they cross once
    if i == 0 or diff[i] == 0:
        return float((fpr[i] + fnr[i]) / 2)
    # Interpolate between points i-1 (fpr < fnr) and i (fpr >= fnr).
    a, b = diff[i - 1], diff[i]
    w = a / (a - b)
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def pick_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising balanced accuracy (Youden's J), midway between the neighbouring distinct scores;
    ties broken towards the threshold closest to 0.5."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    distinct = np.unique(scores)
    candidates = np.concatenate([[distinct[0] - EPS], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1] + EPS]])
    best, best_j = 0.5, -np.inf
    for t in candidates:
        pred = scores >= t
        tpr = pred[labels].mean() if labels.any() else 0.0
        fpr = pred[~labels].mean() if (~labels).any() else 0.0
        j = tpr - fpr
        if j > best_j + 1e-12 or (abs(j - best_j) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_j = float(t), j
    return float(np.clip(best, 0.0, 1.0))


def compute_metrics(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float
) -> Metrics:
    """All video-level metrics at ``threshold`` (``score >= threshold`` means fake)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    pred = s >= threshold
    tp = int(np.sum(pred & y))
    tn = int(np.sum(~pred & ~y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    specificity = tn / (tn + fp) if tn + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    p = np.clip(s, EPS, 1 - EPS)
    log_loss = float(-np.mean(y * np.log(p) + (~y) * np.log(1 - p))) if len(s) else float("nan")
    both = y.any() and (~y).any()
    if both:
        from sklearn.metrics import average_precision_score

        ap = float(average_precision_score(y.astype(int), s))
    else:
        ap = float("nan")
    return Metrics(
        auc=roc_auc(y, s),
        accuracy=(tp + tn) / len(s) if len(s) else float("nan"),
        balanced_accuracy=(recall + specificity) / 2,
        precision=precision,
        recall=recall,
        f1=f1,
        eer=equal_error_rate(y, s) if both else float("nan"),
        log_loss=log_loss,
        average_precision=ap,
        threshold=float(threshold),
        confusion=[[tn, fp], [fn, tp]],
        count=len(s),
        positives=int(y.sum()),
    )


def format_metrics(m: Metrics, title: str = "") -> str:
    (tn, fp), (fn, tp) = m.confusion
    lines = [
        f"{title}videos {m.count} ({m.positives} fake, {m.count - m.positives} real), threshold {m.threshold:.4f}",
        f"  AUC {m.auc:.4f}   EER {m.eer:.4f}   AP {m.average_precision:.4f}   log loss {m.log_loss:.4f}",
        f"  accuracy {m.accuracy:.4f}   balanced accuracy {m.balanced_accuracy:.4f}",
        f"  precision {m.precision:.4f}   recall {m.recall:.4f}   F1 {m.f1:.4f}",
        "  confusion matrix (rows: true, columns: predicted)",
        "              real   fake",
        f"    real   {tn:6d} {fp:6d}",
        f"    fake   {fn:6d} {tp:6d}",
    ]
    return "\n".join(lines)


def plot_roc(labels: np.ndarray, scores: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr, _ = roc_points(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    ax.plot(fpr, tpr, lw=2, label=f"AUC {roc_auc(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# --- scoring -------------------------------------------------------------------------------------------------


@dataclass
class Scored:
    path: str
    label: int
    source: str
    prob_fake: float
    frames_with_face: int
    frames: int


def twin_scorer(
    checkpoint: Path | None, cache: Path | None, self_blend_seed: int | None = None
) -> tuple[Callable[[Any], list[Scored]], dict[str, Any]]:
    """Scorer with the PyTorch twin on the served pipeline's crops of every analysed face, combined as the ensemble
    does (``video_verdict``); returns (score(sample), metadata).

    With ``self_blend_seed``, every real video also yields a self-blended fake (source "self-blend"; one seeded
    blend of its main face per video, the other faces left as they are, no other augmentation): how well the model
    finds the fakes it was trained on.
    """
    import hashlib

    import torch

    from deepfake_core.checkpoint import load_or_untrained
    from deepfake_core.face_verdicts import video_verdict
    from deepfake_core.preprocess import normalize_crops
    from training.faces_cache import FaceExtractor
    from training.self_blend import draw_params, self_blend_clip

    model, metadata = load_or_untrained(checkpoint)
    extractor = FaceExtractor(int(metadata.get("num_frames", C.NUM_FRAMES)), cache)

    def prob_fake(crops: np.ndarray, present: np.ndarray) -> np.ndarray:
        """PROB_FAKE [F] of every face: crops [F, T, S, S, 3] uint8, present [F, T], one batch as the ensemble's."""
        faces = normalize_crops(crops)
        faces[~present] = 0.0
        with torch.inference_mode():
            logit, _ = model(torch.from_numpy(faces), torch.from_numpy(present.astype(np.float32)))
        return torch.sigmoid(logit).numpy().astype(np.float64)

    def scored(path: str, label: int, source: str, probs: np.ndarray, present: np.ndarray) -> Scored:
        d = video_verdict(probs, present)
        return Scored(path, label, source, float(probs[d]), int(present[d].sum()), present.shape[1])

    def score(sample: Any) -> list[Scored]:
        clips = extractor.faces(sample)
        crops = np.stack([clip.crops for clip in clips])
        present = np.stack([clip.present for clip in clips])
        probs = prob_fake(crops, present)
        out = [scored(str(sample.path), sample.label, sample.source, probs, present)]
        main = clips[0]
        if self_blend_seed is not None and sample.label == 0 and main.present.any():
            key = int(hashlib.sha256(str(sample.path).encode()).hexdigest()[:8], 16)
            params = draw_params(np.random.default_rng([self_blend_seed, key]))
            blended, _ = self_blend_clip(main.crops, main.landmarks, main.present, params)
            crops[0] = blended
            out.append(scored(f"{sample.path}#self-blend", 1, "self-blend", prob_fake(crops, present), present))
        return out

    return score, metadata


def triton_scorer(url: str, checkpoint: Path | None) -> tuple[Callable[[Any], list[Scored]], dict[str, Any]]:
    """Scorer through Triton's ``deepfake_detector`` ensemble (whole videos; no panel cropping)."""
    from clients.triton_client import DetectorClient
    from deepfake_core.checkpoint import load_or_untrained

    _, metadata = load_or_untrained(checkpoint)
    client = DetectorClient(url)

    def score(sample: Any) -> list[Scored]:
        if sample.panel is not None or sample.is_image:
            raise ValueError("side-by-side composites and photos can only be scored with the twin")
        result = client.detect(sample.path.read_bytes(), int(metadata.get("num_frames", C.NUM_FRAMES)))
        found, frames = int(result.has_face.sum()), len(result.has_face)
        return [Scored(str(sample.path), sample.label, sample.source, float(result.prob_fake), found, frames)]

    return score, metadata


def _select(samples: list[Any], split_file: Path | None, split: str) -> list[Any]:
    if split_file is None or split == "all":
        return samples
    chosen = set(json.loads(split_file.read_text())[split])
    return [s for s in samples if str(s.path) in chosen]


def write_checkpoint_metadata(
    checkpoint: Path, updates: dict[str, Any], platt: tuple[float, float] | None = None
) -> None:
    """Rewrite ``checkpoint`` with metadata updated (tensor dtype kept: a float16 file stays float16), and Platt
    scaling folded into its video head when given."""
    import torch

    from deepfake_core.checkpoint import load_checkpoint, save_checkpoint

    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    half = any(t.dtype == torch.float16 for t in raw["state_dict"].values())
    model, metadata = load_checkpoint(checkpoint)
    if platt is not None:
        from training.calibrate import fold_platt

        fold_platt(model, *platt)
    metadata.update(updates)
    save_checkpoint(checkpoint, model, metadata, half=half)


def main(argv: Sequence[str] | None = None) -> int:
    from training.datasets import discover_all
    from training.faces_cache import DEFAULT_CACHE

    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", type=Path, required=True, help="labelled dataset folders")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled weights (export default)")
    p.add_argument("--untrained", action="store_true", help="evaluate the seeded untrained model")
    p.add_argument("--triton", default=None, help="score through Triton at HOST:PORT (gRPC) instead of the twin")
    p.add_argument("--split-file", type=Path, default=None, help="<checkpoint>.split.json written by training")
    p.add_argument("--split", default="val", choices=("train", "val", "all"))
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--threshold", type=float, default=None, help="default: the checkpoint's")
    p.add_argument("--pick-threshold", action="store_true", help="choose the threshold on this data")
    p.add_argument("--write-checkpoint", action="store_true", help="store threshold + metrics in the checkpoint")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="fit Platt scaling of the video score on this data (with --write-checkpoint: fold it into the weights)",
    )
    p.add_argument("--out", type=Path, default=Path("results/evaluation"))
    p.add_argument(
        "--self-blend", action="store_true", help="add a seeded self-blended fake of every real video (twin only)"
    )
    p.add_argument("--seed", type=int, default=20261121, help="seed of --self-blend")
    args = p.parse_args(argv)

    checkpoint = args.checkpoint
    if checkpoint is None and not args.untrained:
        from export.onnx_export import DEFAULT_CHECKPOINT

        checkpoint = DEFAULT_CHECKPOINT
    samples = _select(discover_all(args.data), args.split_file, args.split)
    if not samples:
        print("no labelled videos found", file=sys.stderr)
        return 1
    if args.triton:
        score, metadata = triton_scorer(args.triton, checkpoint)
    else:
        score, metadata = twin_scorer(checkpoint, args.cache, args.seed if args.self_blend else None)

    from tqdm import tqdm

    scored: list[Scored] = []
    for sample in tqdm(samples, desc="evaluate", unit="video"):
        try:
            scored.extend(score(sample))
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"skipped {sample.path}: {exc}", file=sys.stderr)
    labels = np.array([s.label for s in scored])
    probs = np.array([s.prob_fake for s in scored])
    platt: tuple[float, float] | None = None
    if args.calibrate:
        from training.calibrate import apply_platt, fit_platt

        platt = fit_platt(labels, probs)
        probs = apply_platt(probs, *platt)
        scored = [dataclasses.replace(s, prob_fake=float(p)) for s, p in zip(scored, probs, strict=True)]
        print(f"Platt scaling fitted on these {len(scored)} videos: logit' = {platt[0]:.4f} * logit + {platt[1]:.4f}")
    threshold = float(metadata.get("threshold", C.DECISION_THRESHOLD)) if args.threshold is None else args.threshold
    if args.pick_threshold:
        threshold = pick_threshold(labels, probs)
        print(f"picked threshold {threshold:.4f} (max balanced accuracy on these {len(scored)} videos)")
    metrics = compute_metrics(labels, probs, threshold)
    print(format_metrics(metrics, f"[{metadata.get('version')}] "))
    by_source: dict[str, dict[str, Any]] = {}
    for src in sorted({s.source for s in scored}):
        members = [s for s in scored if s.source == src]
        by_source[src] = {
            "count": len(members),
            "mean_prob_fake": round(float(np.mean([s.prob_fake for s in members])), 4),
            "flagged_fake": int(sum(s.prob_fake >= threshold for s in members)),
        }
        print(f"  {src:>14}: {by_source[src]}")

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "per_video.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "source", "prob_fake", "predicted", "frames_with_face", "frames"])
        for s in scored:
            writer.writerow(
                [
                    s.path,
                    s.label,
                    s.source,
                    f"{s.prob_fake:.6f}",
                    int(s.prob_fake >= threshold),
                    s.frames_with_face,
                    s.frames,
                ]
            )
    if labels.any() and (~labels.astype(bool)).any():
        plot_roc(labels, probs, args.out / "roc.png", f"ROC ({args.split}, {len(scored)} videos)")
    report = {
        "metrics": metrics.as_dict(),
        "by_source": by_source,
        "split": args.split,
        "data": [str(d) for d in args.data],
    }
    (args.out / "metrics.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out / 'per_video.csv'}, {args.out / 'roc.png'}, {args.out / 'metrics.json'}")
    if args.write_checkpoint:
        if checkpoint is None:
            print("--write-checkpoint needs a checkpoint", file=sys.stderr)
            return 1
        stored = dict(metadata.get("metrics") or {})
        stored["validation"] = {**metrics.as_dict(), "split": args.split, "data": [str(d) for d in args.data]}
        if platt is not None:  # folded into the weights below; recorded with the metrics it produced
            stored["calibration"] = {"platt_a": platt[0], "platt_b": platt[1], "fitted_on": args.split}
        write_checkpoint_metadata(checkpoint, {"threshold": threshold, "metrics": stored}, platt)
        print(f"stored threshold {threshold:.4f} and metrics in {checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
