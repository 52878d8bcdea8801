"""Frozen frame-encoder features of cached face clips, computed once: the material of cheap head training and of
repeated group k-fold model selection (``training.research.crossval``).

For every clip of the face cache (``training.faces_cache``) and every *variant* of it, up to ``frames`` evenly spaced
face frames go through a frozen encoder; the per-frame features are stored. Variants:

- ``clean``: the crops as served;
- ``aug``: one draw of ``training.augment.augment_clip`` (re-compression, downscale, blur, noise, colour, flip);
  the same random pipeline for both classes, so quality is no shortcut;
- ``sbi<k>`` (real clips only): a self-blend of the clip (``training.self_blend``, one draw per clip), then the same
  augmentation draw as ``aug``: the real clip's fake twin.

Output: ``<out>/<encoder>.pt`` (``torch.save``): ``{"encoder", "frames", "items": [{path, label, group, source,
root, variant, feats float16 [F, D], present bool [F]}]}``; resumable (items already there are kept).

``python -m training.research.features --data DIR [DIR ...] --cache FACE_CACHE --out DIR --encoder dinov2_112``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake_core.paths import BUNDLED_CHECKPOINT
from deepfake_core.preprocess import normalize_crops
from training.augment import AugmentConfig, augment_clip
from training.datasets import Sample, discover
from training.faces_cache import DEFAULT_CACHE, FaceClip, FaceExtractor
from training.self_blend import draw_params, self_blend_clip

__all__ = ["ENCODERS", "build_encoder", "clip_variants", "extract", "face_frames"]

ENCODERS = ("dinov2_112", "dinov2_168", "lite0_224", "lite0_bundled")


def build_encoder(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A frozen encoder: normalised crops ``[N, 3, 224, 224]`` -> features ``[N, D]``."""
    if name.startswith("dinov2_"):
        from deepfake_core.vit import VitEncoder, load_dinov2

        vit = VitEncoder(image_size=int(name.split("_")[1]), out_blocks=(8, 12)).eval()
        load_dinov2(vit)
        if vit.image_size != 112:  # 224 is not a multiple of 168: resample the crops instead of pooling
            size = vit.image_size
            return lambda x: vit(torch.nn.functional.interpolate(x, size=(size, size), mode="area"))
        return vit
    if name == "lite0_224":
        from deepfake_core.classifier import TemporalClassifier, resolve_arch
        from training.pretrained import load_imagenet

        model = TemporalClassifier(resolve_arch({"backbone": "effnet_lite0"})).eval()
        load_imagenet(model)
        return model.frame_encoder
    if name == "lite0_bundled":
        return _bundled_frame_features()
    raise ValueError(f"unknown encoder {name!r}; one of {', '.join(ENCODERS)}")


def _bundled_frame_features(path: Path = BUNDLED_CHECKPOINT) -> Callable[[torch.Tensor], torch.Tensor]:
    """The bundled checkpoint's frame encoder up to its last MBConv block, frozen: that block's input maps,
    flattened ``[N, C * h * w]`` (192 x 7 x 7), so heads can tune the last block
    (``training.research.tune_last_block``)."""
    from deepfake_core.checkpoint import load_checkpoint
    from deepfake_core.classifier import TemporalClassifier

    model, _ = load_checkpoint(path)
    if not isinstance(model, TemporalClassifier):
        raise ValueError(f"{path} is not a TemporalClassifier checkpoint")
    encoder = model.eval().frame_encoder

    return lambda x: encoder.trunk(x, blocks=len(encoder.blocks) - 1).flatten(1)


def face_frames(clip: FaceClip, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(crops, landmarks, present) of up to ``frames`` evenly spaced face frames of a clip (the ``clean``
    variant); None when the clip has no face."""
    faces = np.flatnonzero(clip.present)
    if len(faces) == 0:
        return None
    if len(faces) > frames:
        faces = faces[np.round(np.linspace(0, len(faces) - 1, frames)).astype(int)]
    return clip.crops[faces], clip.landmarks[faces], clip.present[faces]


def clip_variants(
    clip: FaceClip, label: int, frames: int, blends: int, seed: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(variant, crops [F, S, S, 3] uint8, present [F]) of one clip; see the module docstring."""
    selected = face_frames(clip, frames)
    if selected is None:
        return []
    crops, landmarks, present = selected
    rng = np.random.default_rng(seed)
    aug_seed = int(rng.integers(2**63))
    config = AugmentConfig()
    out = [
        ("clean", crops, present),
        ("aug", augment_clip(crops, present, np.random.default_rng(aug_seed), config), present),
    ]
    if label == 0:
        for k in range(blends):
            blended, _ = self_blend_clip(crops, landmarks, present, draw_params(rng))
            out.append(
                (f"sbi{k}", augment_clip(blended, present, np.random.default_rng(aug_seed + k), config), present)
            )
    return out


def extract(
    samples: Sequence[tuple[Sample, str]],
    encoder_name: str,
    out: Path,
    cache: Path = DEFAULT_CACHE,
    frames: int = 16,
    blends: int = 2,
    batch: int = 32,
    save_every: int = 25,
) -> dict[str, Any]:
    """Features of every (sample, root name); resumes from ``out`` when it exists."""
    encode = build_encoder(encoder_name)
    state: dict[str, Any] = {"encoder": encoder_name, "frames": frames, "items": []}
    if out.exists():
        state = torch.load(out, weights_only=False)
    done = {(it["path"], it["variant"]) for it in state["items"]}
    extractor = FaceExtractor(cache_dir=cache)
    start, count = time.monotonic(), 0
    for n, (sample, root) in enumerate(samples):
        if (str(sample.path), "clean") in done:
            continue
        try:
            clip = extractor(sample)
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the run
            print(f"skipped {sample.path}: {exc}")
            continue
        for variant, crops, present in clip_variants(clip, sample.label, frames, blends, seed=n):
            x = torch.from_numpy(normalize_crops(crops))
            with torch.no_grad():
                feats = torch.cat([encode(x[i : i + batch]) for i in range(0, len(x), batch)])
            count += len(x)
            state["items"].append(
                {
                    "path": str(sample.path),
                    "label": sample.label,
                    "group": sample.group,
                    "source": sample.source,
                    "root": root,
                    "variant": variant,
                    "feats": feats.half(),
                    "present": torch.from_numpy(present.copy()),
                }
            )
        if (n + 1) % save_every == 0:
            _save(state, out)
            rate = count / max(time.monotonic() - start, 1e-9)
            print(f"{n + 1}/{len(samples)} clips, {len(state['items'])} items, {rate:.1f} crops/s", flush=True)
    _save(state, out)
    state["crops_per_s"] = count / max(time.monotonic() - start, 1e-9)
    return state


def _save(state: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.research.features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="face cache (training.faces_cache)")
    parser.add_argument("--out", type=Path, required=True, help="folder for <encoder>.pt")
    parser.add_argument("--encoder", choices=ENCODERS, default="dinov2_112")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--blends", type=int, default=2, help="self-blended variants per real clip")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    samples = [(s, root.name) for root in args.data for s in discover(root)]
    state = extract(samples, args.encoder, args.out / f"{args.encoder}.pt", args.cache, args.frames, args.blends)
    print(f"{len(state['items'])} items; {state['crops_per_s']:.1f} crops/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
