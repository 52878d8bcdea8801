"""Readable scores for a temporal checkpoint: its threshold folded into the video head (``probability_fake >= 0.5``
is FAKE) and its frame scores moved onto the video's scale (``training.calibrate.fit_frame_scale``).

The temporal model's frame head is a separate linear head whose scores live on their own scale; here its logits are
mapped by ``a * logit + b``, fitted so that the mean frame logit of a video predicts the video logit. The ranking of
videos and every verdict stay as they were. This is how ``weights/classifier.pt`` (``...-cal2``) was made:

``python -m training.frame_scale --data ../shared/data/dataset_clips ../shared/data/train ../shared/data/real_faces
--cache FACE_CACHE --checkpoint OLD.pt --out weights/classifier.pt --version sbi-lite0-imagenet-20261122-cal2``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake_core.checkpoint import load_checkpoint, save_checkpoint
from deepfake_core.classifier import TemporalClassifier
from deepfake_core.constants import DECISION_THRESHOLD
from deepfake_core.ensemble_contract import logit
from deepfake_core.preprocess import normalize_crops
from training.calibrate import fit_frame_scale

__all__ = ["rescale", "score_rows"]


def score_rows(
    model: TemporalClassifier, clips: Iterable[tuple[np.ndarray, np.ndarray]]
) -> list[tuple[float, list[float]]]:
    """(video logit, frame logits of the face frames) of each clip's (uint8 crops [F, S, S, 3], present [F])."""
    rows = []
    for crops, present in clips:
        x = torch.from_numpy(normalize_crops(crops))[None]
        with torch.no_grad():
            out = model(x, torch.from_numpy(present.astype(np.float32))[None])
        rows.append((float(out.video_logit[0]), out.frame_logits[0][torch.from_numpy(present)].tolist()))
    return rows


def rescale(model: TemporalClassifier, threshold: float, rows: Sequence[tuple[float, list[float]]]) -> dict[str, Any]:
    """Fold ``threshold`` into ``model``'s video head and fit/fold the frame scale on ``rows`` (``score_rows`` of the
    unchanged model), in place; returns what was done and how often frames sit on their video's side of 0.5."""
    shift = -logit(threshold)
    video = np.array([v for v, _ in rows]) + shift
    frames = [np.asarray(f) for _, f in rows]
    a, b = fit_frame_scale(video, np.array([f.mean() for f in frames]))

    def agreement(scale: float, offset: float) -> float:
        return float(
            np.mean([np.mean((scale * f + offset >= 0) == (v >= 0)) for f, v in zip(frames, video, strict=True)])
        )

    model.affine_logits(1.0, shift)
    model.affine_frame_logits(a, b)
    return {
        "threshold_folded": threshold,
        "video_logit_shift": shift,
        "frame_scale": {"a": a, "b": b, "videos": len(rows)},
        "frames_on_the_videos_side_before": agreement(1.0, 0.0),
        "after": agreement(a, b),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from training.datasets import discover
    from training.faces_cache import DEFAULT_CACHE, FaceExtractor
    from training.research.features import face_frames

    parser = argparse.ArgumentParser(prog="python -m training.frame_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", type=Path, required=True, help="folders of labelled videos")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="face cache (training.faces_cache)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a temporal checkpoint")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=90, help="videos to fit on (a seeded shuffle of --data)")
    parser.add_argument("--frames", type=int, default=8, help="face frames per video")
    parser.add_argument("--version", required=True)
    args = parser.parse_args(argv)
    model, metadata = load_checkpoint(args.checkpoint)
    if not isinstance(model, TemporalClassifier):
        raise SystemExit("frame_scale is for the temporal arch (vit_frame_mean's frames already share its scale)")
    samples = [s for root in args.data for s in discover(root) if not s.is_image]
    np.random.default_rng(0).shuffle(samples)  # type: ignore[arg-type]
    extractor = FaceExtractor(cache_dir=args.cache)
    clips = []
    for sample in samples[: args.clips]:
        try:
            selected = face_frames(extractor(sample), args.frames)
        except Exception:  # noqa: BLE001, S112 - an unreadable file is left out, as the face cache does
            continue
        if selected is not None:
            clips.append((selected[0], selected[2]))
    stats = rescale(model, float(metadata["threshold"]), score_rows(model, clips))
    kept = {k: v for k, v in metadata.items() if k != "arch"}
    kept.update(
        threshold=DECISION_THRESHOLD, version=args.version, metrics={**metadata["metrics"], "score_scale": stats}
    )
    save_checkpoint(args.out, model, kept, half=True)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
