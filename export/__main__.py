"""``python -m export``: export the Triton models to ONNX (see export.onnx_export)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from export.onnx_export import (
    DEFAULT_CHECKPOINT,
    DEFAULT_MODEL_REPOSITORY,
    MODEL_NAMES,
    ExportCheckError,
    QuantizationError,
    export_models,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export MTCNN P/R/O-Net and the temporal classifier to <repo>/<model>/1/model.onnx, "
        "checked against torch with ONNX Runtime. Up-to-date models are skipped.",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=DEFAULT_MODEL_REPOSITORY,
        help=f"Triton model repository (default: {DEFAULT_MODEL_REPOSITORY})",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint",
        type=Path,
        default=DEFAULT_CHECKPOINT,
        help="classifier checkpoint (default: %(default)s; none = the seeded untrained model)",
    )
    source.add_argument(
        "--untrained", action="store_true", help="export the seeded untrained classifier (ignore the default)"
    )
    parser.add_argument("--force", action="store_true", help="export even when the stamp says up to date")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=MODEL_NAMES,
        metavar="NAME",
        help=f"export only these models ({', '.join(MODEL_NAMES)})",
    )
    parser.add_argument(
        "--precision",
        choices=("int8", "fp32"),
        default="int8",
        help="classifier precision: int8 (default) quantises it (export.quantize) and serves INT8 only if PROB_FAKE "
        "stays within 0.02 of float32 on generated clips, else float32 (metadata.json's precision_reason says which); "
        "an INT8 attempt that fails otherwise fails the export; fp32 skips quantisation",
    )
    parser.add_argument(
        "--tensorrt",
        action="store_true",
        help="also build FP16 TensorRT engines (1/model.plan, for configs/trt.pbtxt); skipped with a message where "
        "TensorRT is absent (see export.tensorrt)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    checkpoint = None if args.untrained else args.checkpoint
    try:
        export_models(
            args.model_repository, checkpoint, force=args.force, only=args.only, quantize=args.precision == "int8"
        )
    except (ExportCheckError, QuantizationError, FileNotFoundError, ValueError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    if args.tensorrt:
        from export import tensorrt

        return tensorrt.run(args.model_repository, only=args.only, force=args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
