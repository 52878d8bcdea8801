"""Video scores of a trained checkpoint on the face cache, as a fixed baseline for ``training.research.crossval``.

``python -m training.research.score_checkpoint --data DIR [DIR ...] --checkpoint CKPT --out scores.json [--frames 16]``:
``{path: video logit}`` from the PyTorch twin on up to ``frames`` evenly spaced face frames of each clip (the
crops ``training.research.features`` uses for its ``clean`` variant).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from deepfake_core.checkpoint import load_checkpoint
from deepfake_core.preprocess import normalize_crops
from training.datasets import discover
from training.faces_cache import DEFAULT_CACHE, FaceExtractor
from training.research.features import face_frames


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.research.score_checkpoint", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", nargs="+", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    model, _ = load_checkpoint(args.checkpoint)
    model.eval()
    extractor = FaceExtractor(cache_dir=args.cache)
    scores: dict[str, float] = {}
    for root in args.data:
        for sample in discover(root):
            try:
                clip = extractor(sample)
            except Exception as exc:  # noqa: BLE001
                print(f"skipped {sample.path}: {exc}")
                continue
            selected = face_frames(clip, args.frames)
            if selected is None:
                continue
            crops, _, present = selected
            x = torch.from_numpy(normalize_crops(crops))[None]
            with torch.no_grad():
                logit = model(x, torch.from_numpy(present.astype("float32"))[None]).video_logit
            scores[str(sample.path)] = float(logit[0])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(scores, indent=0))
    print(f"{len(scores)} clips scored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
