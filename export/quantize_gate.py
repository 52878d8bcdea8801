"""Quality gate of the INT8 classifier on real clips: float32 and INT8 graphs side by side.

``python -m export.quantize_gate --data DIR [DIR ...] [--cache DIR] [--model-repository DIR]``: for every labelled
video of the folders, the served crops (``training.faces_cache``: the serving pipeline, cached) go through
``temporal_classifier/1/model.fp32.onnx`` and ``model.onnx`` (INT8; where the export refused INT8 and serves
float32, the served graph is quantised here as the export does) as Triton would feed them (all T frames, the face
mask); prints both AUCs, the largest and mean |delta PROB_FAKE| per video, and verdicts that flip at 0.5. Exit status
1 when the rule (|delta AUC| <= 0.01, every |delta PROB_FAKE| <= 0.02) is broken. Rerun it after exporting a new
checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepfake_core.constants import CLASSIFIER_MODEL
from deepfake_core.paths import MODEL_REPOSITORY
from deepfake_core.preprocess import normalize_crops
from export.quantize import (
    CALIBRATION_SIZES,
    MAX_PROB_DELTA,
    generated_batches,
    prob_fake,
    quantize_classifier,
    session,
)
from training.datasets import discover_all
from training.evaluate import roc_auc
from training.faces_cache import DEFAULT_CACHE, FaceExtractor

MAX_AUC_DELTA = 0.01


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.quantize_gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", type=Path, required=True, help="dataset folders (any known layout)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="face cache (default: %(default)s)")
    parser.add_argument("--model-repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--out", type=Path, help="write the per-video scores here (JSON)")
    args = parser.parse_args(argv)
    folder = args.model_repository / CLASSIFIER_MODEL / "1"
    fp32_path, int8_path = folder / "model.fp32.onnx", folder / "model.onnx"
    with tempfile.TemporaryDirectory(prefix="quantize-gate-") as tmp:
        if not fp32_path.exists():  # the export refused INT8 and serves float32: quantise it the same way here
            fp32_path, int8_path = int8_path, Path(tmp) / "model.int8.onnx"
            print(f"{folder} serves float32; quantising it as python -m export does (generated calibration clips)")
            quantize_classifier(fp32_path, int8_path, generated_batches(CALIBRATION_SIZES, 3, seed=0, chunk=8))
        fp32, int8 = session(fp32_path), session(int8_path)
    extractor = FaceExtractor(cache_dir=args.cache)
    labels, want, got, names = [], [], [], []
    for sample in discover_all(args.data):
        if sample.is_image:
            continue
        try:
            clip = extractor(sample)
        except Exception as exc:  # noqa: BLE001 - one unreadable clip must not stop the report
            print(f"skipped {sample.path}: {exc}", file=sys.stderr)
            continue
        if not clip.present.any():
            continue
        batch = [(normalize_crops(clip.crops)[None], clip.present.astype(np.float32)[None])]
        want.append(prob_fake(fp32, batch)[0])
        got.append(prob_fake(int8, batch)[0])
        labels.append(sample.label)
        names.append(str(sample.path))
    y, a, b = np.array(labels), np.array(want), np.array(got)
    delta = np.abs(b - a)
    auc_a, auc_b = roc_auc(y, a), roc_auc(y, b)
    flips = int(np.sum((a >= 0.5) != (b >= 0.5)))
    print(f"videos with a face: {len(y)} ({int(y.sum())} fake)")
    print(f"AUC float32 {auc_a:.4f}  INT8 {auc_b:.4f}  delta {auc_b - auc_a:+.4f} (limit {MAX_AUC_DELTA})")
    print(f"|delta PROB_FAKE| max {delta.max():.4f}  mean {delta.mean():.4f}  (limit {MAX_PROB_DELTA} per video)")
    print(f"verdicts flipped at 0.5: {flips}")
    if args.out:
        rows = {
            n: {"label": int(lab), "fp32": float(p), "int8": float(q)}
            for n, lab, p, q in zip(names, y, a, b, strict=True)
        }
        args.out.write_text(json.dumps(rows, indent=1))
    ok = abs(auc_b - auc_a) <= MAX_AUC_DELTA and float(delta.max()) <= MAX_PROB_DELTA
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
