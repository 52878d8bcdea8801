"""Retrain today's Lite0 on the new data, cheaply: tune its last MBConv block, head conv and a frame head on cached
maps, and compare by repeated group k-fold (``training.research.crossval``).

The features file comes from ``python -m training.research.features --encoder lite0_bundled``: per face frame, the
bundled checkpoint's frozen encoder up to its last block (192 x 7 x 7 maps). On top of them:

- ``bundled``: the bundled checkpoint unchanged (its last block, temporal model and video head), scored on the
  same 8 frames; the reference, now with a self-blend figure too;
- ``probe``: a logistic-regression head on the frozen encoder's pooled features (video mean), retrained per fold
  on the new data;
- ``stack``: the probe's features plus the bundled video logit;
- ``blend``: the mean of the z-scored probe and bundled logits;
- ``tune``: per fold, the last block, the head conv and a frame head (initialised from the probe) trained with
  frame-level BCE on the fold's clips (clean, augmented, self-blended twins); the video logit is the mean frame
  logit.

``python -m training.research.tune_last_block --features FEATS/lite0_bundled.pt --data-root ../shared/data \
--mode probe tune``
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfake_core.checkpoint import load_checkpoint
from deepfake_core.classifier import TemporalClassifier
from deepfake_core.paths import BUNDLED_CHECKPOINT
from training.research.crossval import (
    Clip,
    fit_head,
    format_table,
    leave_one_dataset_out,
    load_clips,
    run_crossval,
    source_weights,
    training_set,
)

Scorer = Callable[[Clip, str], float]
Factory = Callable[[Sequence[Clip]], Scorer]
MAP_SHAPE = (192, 7, 7)


class LastBlockHead(nn.Module):
    """The encoder's last MBConv + head conv + pooling + a linear frame head: maps ``[N, 192, 7, 7] -> [N]``."""

    def __init__(self, model: TemporalClassifier) -> None:
        super().__init__()
        self.block = copy.deepcopy(model.frame_encoder.blocks[-1])
        self.features_out = copy.deepcopy(model.frame_encoder.features_out)
        self.dropout = nn.Dropout(0.2)
        self.frame_head = nn.Linear(model.frame_encoder.out_features, 1)

    def pooled(self, maps: torch.Tensor) -> torch.Tensor:
        return self.features_out(self.block(maps)).mean((2, 3))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.frame_head(self.dropout(self.pooled(maps))).squeeze(-1)


def _bundled() -> TemporalClassifier:
    model, _ = load_checkpoint(BUNDLED_CHECKPOINT)
    assert isinstance(model, TemporalClassifier)
    return model.eval()


@torch.no_grad()
def derive(clips: Sequence[Clip], model: TemporalClassifier, batch: int = 256) -> None:
    """Add per variant: ``pooled`` frames ``[F, 1280]`` (frozen last block) and the bundled video logit."""
    frozen = LastBlockHead(model).eval()
    for c in clips:
        c.maps = {}  # type: ignore[attr-defined]
        c.pooled = {}  # type: ignore[attr-defined]
        c.bundled = {}  # type: ignore[attr-defined]
        for variant, frames in c.frames.items():
            maps = torch.from_numpy(frames).view(-1, *MAP_SHAPE)
            chunks = [maps[i : i + batch] for i in range(0, len(maps), batch)]
            pooled = torch.cat([frozen.pooled(m) for m in chunks])
            out = model.head(pooled[None, :, :, None, None], torch.ones(1, len(pooled)))
            c.maps[variant] = maps.half()  # type: ignore[attr-defined]
            c.pooled[variant] = pooled.numpy()  # type: ignore[attr-defined]
            c.bundled[variant] = float(out.video_logit[0])  # type: ignore[attr-defined]
            c.variants[variant] = pooled.numpy().mean(0)
        c.frames = {}


def bundled_scorer(train: Sequence[Clip]) -> Scorer:
    return lambda clip, variant: clip.bundled[variant]  # type: ignore[attr-defined]


def probe(c: float) -> Factory:
    def factory(train: Sequence[Clip]) -> Scorer:
        head = fit_head(*training_set(train), c=c)
        return lambda clip, variant: float(head.logits(clip.variants[variant][None])[0])

    return factory


def stack(c: float) -> Factory:
    def with_logit(clip: Clip, variant: str) -> np.ndarray:
        return np.append(clip.pooled[variant].mean(0), clip.bundled[variant])  # type: ignore[attr-defined]

    def factory(train: Sequence[Clip]) -> Scorer:
        head = fit_head(*training_set(train, features=with_logit), c=c)
        return lambda clip, variant: float(head.logits(with_logit(clip, variant)[None])[0])

    return factory


def blend(c: float) -> Factory:
    """The mean of the probe's and the bundled checkpoint's logits, each z-scored on the training clips."""

    def factory(train: Sequence[Clip]) -> Scorer:
        head = fit_head(*training_set(train), c=c)
        probe_train = head.logits(np.stack([t.variants["clean"] for t in train]))
        bundled_train = np.array([t.bundled["clean"] for t in train])  # type: ignore[attr-defined]
        (pm, ps), (bm, bs) = (probe_train.mean(), probe_train.std()), (bundled_train.mean(), bundled_train.std())

        def score(clip: Clip, variant: str) -> float:
            p = float(head.logits(clip.variants[variant][None])[0])
            return 0.5 * ((p - pm) / ps + (clip.bundled[variant] - bm) / bs)  # type: ignore[attr-defined]

        return score

    return factory


def _frame_set(train: Sequence[Clip]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(maps, labels, weights) per frame, weighted like ``crossval.training_set`` (real / fake / self-blend)."""
    maps: list[torch.Tensor] = []
    labels: list[float] = []
    kinds: list[str] = []
    for c in train:
        units = [(v, c.label, "real" if c.label == 0 else "fake") for v in ("clean", "aug")]
        units += [(v, 1, "sbi") for v in ("sbi0", "sbi1") if c.label == 0]
        for variant, label, kind in units:
            if variant in c.maps:  # type: ignore[attr-defined]
                m = c.maps[variant]  # type: ignore[attr-defined]
                maps.append(m)
                labels += [float(label)] * len(m)
                kinds += [kind] * len(m)
    return torch.cat(maps), torch.tensor(labels), torch.from_numpy(source_weights(kinds)).float()


def train_last_block(
    train: Sequence[Clip], base: TemporalClassifier, epochs: int = 3, c: float = 0.05, seed: int = 0
) -> LastBlockHead:
    """Tune the last block + head conv + frame head on the training clips' frames (BN statistics frozen)."""
    torch.manual_seed(seed)
    model = LastBlockHead(base)
    head = fit_head(*training_set(train), c=c)
    w, b = head.folded()
    with torch.no_grad():
        model.frame_head.weight.copy_(torch.from_numpy(w).float()[None])
        model.frame_head.bias.fill_(b)
    maps, labels, weight = _frame_set(train)
    params = [
        {"params": list(model.block.parameters()) + list(model.features_out.parameters()), "lr": 1e-4},
        {"params": model.frame_head.parameters(), "lr": 1e-3},
    ]
    opt = torch.optim.AdamW(params, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    model.train()
    for m in model.modules():  # frozen BN statistics: the folds are too small to re-estimate them
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    steps = 0
    for _ in range(epochs):
        order = torch.randperm(len(maps))
        for i in range(0, len(order), 128):
            idx = order[i : i + 128]
            loss = (loss_fn(model(maps[idx].float()), labels[idx]) * weight[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    return model.eval()


def tune(epochs: int, c: float) -> Factory:
    base = _bundled()

    def factory(train: Sequence[Clip]) -> Scorer:
        start = time.monotonic()
        model = train_last_block(train, base, epochs=epochs, c=c)
        print(f"  fold trained in {time.monotonic() - start:.0f} s", flush=True)

        @torch.no_grad()
        def score(clip: Clip, variant: str) -> float:
            return float(model(clip.maps[variant].float()).mean())  # type: ignore[attr-defined]

        return score

    return factory


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.research.tune_last_block", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--features", type=Path, required=True, help="training.research.features --encoder lite0_bundled"
    )
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument(
        "--mode",
        nargs="+",
        default=["bundled", "probe", "stack"],
        choices=["bundled", "probe", "stack", "blend", "tune"],
    )
    parser.add_argument("--c", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/tune_last_block"))
    args = parser.parse_args(argv)
    start = time.monotonic()
    clips = load_clips(args.features, args.data_root)
    derive(clips, _bundled())
    print(f"{len(clips)} clips loaded and derived in {time.monotonic() - start:.0f} s", flush=True)
    factories: dict[str, Factory] = {
        "bundled": bundled_scorer,
        "probe": probe(args.c),
        "stack": stack(args.c),
        "blend": blend(args.c),
    }
    results: dict[str, dict[str, Any]] = {}
    wall: dict[str, float] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    for mode in args.mode:
        factory = tune(args.epochs, args.c) if mode == "tune" else factories[mode]
        t0 = time.monotonic()
        results[mode] = run_crossval(clips, factory, args.folds, args.repeats)
        results[mode].update(leave_one_dataset_out(clips, factory))
        wall[mode] = time.monotonic() - t0
        print(mode, json.dumps(results[mode]["dataset-style"]), f"{wall[mode]:.0f} s", flush=True)
        (args.out / "results.json").write_text(json.dumps({"results": results, "wall_s": wall}, indent=1))
    table = format_table(results)
    print(table)
    (args.out / "results.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
