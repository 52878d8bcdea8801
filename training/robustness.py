"""How far a verdict moves when the video is re-encoded or the pixels shift by a grey level, on held-out clips.

``python -m training.robustness --data ../shared/data/{dataset_clips,train,real_faces,faces} --folds-dir runs/r3 \\
    --folds 3 [--clips 20] [--crf 23 40]``

Each clip is scored by the model of the fold (``training.folds``) that held it out, so every figure is on unseen
data. ``--clips`` real and as many fake videos of ``dataset_clips`` (spread over the folds, evenly over the
families) are:

- re-encoded whole (H.264 yuv420p at each ``--crf``, libx264 ``veryfast``, same size and frame rate), run through
  the served face pipeline again and scored: mean and max |delta PROB_FAKE| against the original, and how many
  verdicts (at 0.5) flip;
- shifted by +1 and -1 grey level, and given +-1 grey level of random noise, on their served crops: the largest
  |delta PROB_FAKE| (the brittleness that decides whether INT8 passes its gate).

Prints a markdown table and writes ``robustness.json`` in ``--folds-dir``; ``--baseline`` also scores the bundled
checkpoint on the same clips for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np

from deepfake_core import constants as C
from deepfake_core.checkpoint import load_checkpoint
from deepfake_core.classifier import TemporalClassifier
from deepfake_core.paths import BUNDLED_CHECKPOINT
from training.datasets import Sample
from training.faces_cache import DEFAULT_CACHE, FaceClip, FaceExtractor
from training.folds import FoldData, load_fold_data, score_clips, split_folds

__all__ = ["grey_level_views", "pick_clips", "reencode"]


def reencode(src: Path, dst: Path, crf: int) -> None:
    """``src`` re-encoded whole as H.264 (yuv420p, libx264 veryfast) at ``crf``, same size and frame rate."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or 25
        stream = out.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": "veryfast"})
        stream.width = vin.codec_context.width // 2 * 2
        stream.height = vin.codec_context.height // 2 * 2
        stream.pix_fmt = "yuv420p"
        for frame in inp.decode(video=0):
            image = frame.to_ndarray(format="rgb24")[: stream.height, : stream.width]
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        out.mux(stream.encode(None))


def grey_level_views(crops: np.ndarray, present: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The crops +1 and -1 grey level, and with random +-1 noise."""
    wide = crops.astype(np.int16)
    noise = np.random.default_rng(seed).integers(-1, 2, size=crops.shape, dtype=np.int16)
    views = {"+1": wide + 1, "-1": wide - 1, "+-1 noise": wide + noise}
    out = {}
    for name, view in views.items():
        v = np.clip(view, 0, 255).astype(np.uint8)
        v[~present] = 0
        out[name] = v
    return out


def pick_clips(data: FoldData, held_by: dict[int, int], per_label: int) -> list[int]:
    """``per_label`` real and fake videos of ``dataset_clips`` with a face, round-robin over families and folds."""
    chosen: list[int] = []
    for label in (0, 1):
        buckets: dict[tuple[str, int], list[int]] = {}
        for i, (s, u, c) in enumerate(zip(data.samples, data.units, data.clips, strict=True)):
            if i in held_by and u.root == "dataset_clips" and s.label == label and not s.is_image and c.present.any():
                buckets.setdefault((u.family + u.domain, held_by[i]), []).append(i)
        queues = [sorted(v, key=lambda i: data.units[i].path) for _, v in sorted(buckets.items())]
        picked: list[int] = []
        while len(picked) < per_label and any(queues):
            for q in queues:
                if q and len(picked) < per_label:
                    picked.append(q.pop(0))
        chosen.extend(picked)
    return chosen


def _score(model: TemporalClassifier, clip: FaceClip, frames: int) -> float:
    idx = np.unique(np.linspace(0, len(clip.crops) - 1, min(frames, len(clip.crops))).round().astype(int))
    return score_clips(model, [(clip.crops[idx], clip.present[idx])], "cpu")[0]


def reencoded_clips(data: FoldData, chosen: Sequence[int], crfs: Sequence[int]) -> dict[tuple[int, int], FaceClip]:
    """(clip index, crf) -> the served crops of the clip re-encoded at that CRF."""
    extractor = FaceExtractor(C.NUM_FRAMES, cache_dir=None)
    out = {}
    with tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
        for i in chosen:
            sample = data.samples[i]
            for crf in crfs:
                dst = Path(tmp) / f"{i}_crf{crf}.mp4"
                reencode(sample.path, dst, crf)
                out[(i, crf)] = extractor(Sample(dst, sample.label, sample.group, sample.source, sample.panel))
                dst.unlink()
    return out


def measure(
    data: FoldData,
    chosen: Sequence[int],
    models: dict[int, TemporalClassifier],
    held_by: dict[int, int],
    reencoded: dict[tuple[int, int], FaceClip],
    crfs: Sequence[int],
    frames: int,
) -> dict[str, Any]:
    rows = []
    for i in chosen:
        sample, clip = data.samples[i], data.clips[i]
        model = models[held_by[i]]
        row: dict[str, Any] = {"path": str(sample.path), "label": sample.label, "family": data.units[i].family}
        row["score"] = _score(model, clip, frames)
        for crf in crfs:
            again = reencoded[(i, crf)]
            row[f"crf{crf}"] = _score(model, again, frames) if again.present.any() else 0.5
        idx = np.unique(np.linspace(0, len(clip.crops) - 1, min(frames, len(clip.crops))).round().astype(int))
        present = clip.present[idx]
        views = grey_level_views(clip.crops[idx], present, seed=i)
        scores = score_clips(model, [(v, present) for v in views.values()], "cpu")
        row.update(zip(views, scores, strict=True))
        rows.append(row)
    summary: dict[str, Any] = {"clips": len(rows), "real": sum(r["label"] == 0 for r in rows)}
    base = np.array([r["score"] for r in rows])
    for key in [f"crf{c}" for c in crfs] + ["+1", "-1", "+-1 noise"]:
        moved = np.array([r[key] for r in rows])
        flips = int(np.sum((moved >= 0.5) != (base >= 0.5)))
        delta = np.abs(moved - base)
        summary[key] = {"mean |delta|": float(delta.mean()), "max |delta|": float(delta.max()), "flips": flips}
    summary["rows"] = rows
    return summary


def format_summary(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| model | change | mean abs delta PROB_FAKE | max abs delta | verdicts flipped |",
        "|---|---|---|---|---|",
    ]
    for model, summary in results.items():
        for key, v in summary.items():
            if isinstance(v, dict):
                flips = f"{v['flips']} / {summary['clips']} ({100 * v['flips'] / summary['clips']:.0f} %)"
                change = f"re-encode CRF {key[3:]}" if key.startswith("crf") else f"{key} grey level"
                lines.append(f"| {model} | {change} | {v['mean |delta|']:.4f} | {v['max |delta|']:.4f} | {flips} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.robustness", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", type=Path, required=True)
    p.add_argument("--folds-dir", type=Path, required=True, help="training.folds --out")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=0)
    p.add_argument("--clips", type=int, default=20, help="real and fake videos each")
    p.add_argument("--crf", type=int, nargs="+", default=[23, 40])
    p.add_argument("--frames", type=int, default=C.NUM_FRAMES)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--baseline", action="store_true", help="also score the bundled checkpoint")
    args = p.parse_args(argv)
    data = load_fold_data(args.data, args.cache)
    held_by = {int(i): f for f, held in enumerate(split_folds(data, args.folds, args.repeat)) for i in held}
    trained = {}
    for f in range(args.folds):
        path = args.folds_dir / f"r{args.repeat}f{f}.pt"
        if not path.exists():  # a run in progress: measure the folds there are
            print(f"{path.name} is not there (fold not trained yet): its held-out clips are left out", file=sys.stderr)
            continue
        model, _ = load_checkpoint(path)
        assert isinstance(model, TemporalClassifier)
        trained[f] = model.float().eval()
    if not trained:
        raise SystemExit(f"no trained fold in {args.folds_dir}")
    held_by = {i: f for i, f in held_by.items() if f in trained}
    chosen = pick_clips(data, held_by, args.clips)
    candidates: dict[str, dict[int, TemporalClassifier]] = {}
    candidates["trained (its fold's model)"] = trained
    if args.baseline:
        bundled, _ = load_checkpoint(BUNDLED_CHECKPOINT)
        assert isinstance(bundled, TemporalClassifier)
        candidates["bundled"] = dict.fromkeys(trained, bundled.float().eval())
    reencoded = reencoded_clips(data, chosen, args.crf)
    results = {
        name: measure(data, chosen, models, held_by, reencoded, args.crf, args.frames)
        for name, models in candidates.items()
    }
    table = format_summary(results)
    print(table)
    (args.folds_dir / "robustness.json").write_text(json.dumps(results, indent=1))
    (args.folds_dir / "robustness.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
