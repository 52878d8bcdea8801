"""Round-3 training pieces on generated data: fake/original pairs, the robust augmentation, consistency copies and
their loss, the weight average, runs that keep their state to be extended, and the families validation reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_core.checkpoint import load_checkpoint
from training.augment import AugmentConfig, augment_clip
from training.datasets import FAKE, REAL, Sample, originals
from training.faces_cache import FaceClip
from training.train import Batch, ClipPool, TrainConfig, loss_fn, make_batch, share_padding, train
from training.validation import family_of

TINY = {"width_mult": 0.25, "depth_mult": 0.34, "dropout": 0.0, "drop_path": 0.0, "temporal_dim": 64}


def _sample(name: str, label: int, group: str) -> Sample:
    return Sample(Path("/data/dataset_clips") / ("fake" if label else "real") / name, label, group, "FF++")


def test_originals_pair_each_faceforensics_fake_with_its_target_at_its_compression() -> None:
    samples = [
        _sample("ffpp_c23_035.mp4", REAL, "g1"),
        _sample("ffpp_c23_036.mp4", REAL, "g1"),
        _sample("ffpp_c23_Deepfakes_035_036.mp4", FAKE, "g1"),
        _sample("ffpp_c23_FaceSwap_036_035.mp4", FAKE, "g1"),
        _sample("ffpp_orig_youtube_183_c40.mp4", REAL, "g2"),
        _sample("ffpp_Face2Face_183_253_c40.mp4", FAKE, "g2"),
        _sample("ffpp_Deepfakes_253_183_c40.mp4", FAKE, "g2"),  # its original (253) is not in the folder
        _sample("ffpp_c23_Deepfakes_183_253.mp4", FAKE, "g2"),  # c23 fake: the c40 original is not its pair
        _sample("dfdc_facecrop_aaqaifqrwn_0_0.mp4", FAKE, "g3"),
    ]
    pairs = {fake.name: real.name for fake, real in originals(samples).items()}
    assert pairs == {
        "ffpp_c23_Deepfakes_035_036.mp4": "ffpp_c23_035.mp4",
        "ffpp_c23_FaceSwap_036_035.mp4": "ffpp_c23_036.mp4",
        "ffpp_Face2Face_183_253_c40.mp4": "ffpp_orig_youtube_183_c40.mp4",
    }


def test_families_split_faceforensics_by_compression() -> None:
    c23 = {"dataset": "FaceForensics++ (c23, first 5 s stream-copied)"}
    c40 = {"dataset": "FaceForensics++ (c40)"}
    assert family_of("dataset_clips", 1, "FaceForensics++ FaceSwap", c23) == ("FF++ c23 FaceSwap", "ff++ c23")
    assert family_of("dataset_clips", 0, "original", c23) == ("real", "ff++ c23")
    assert family_of("dataset_clips", 1, "Deepfakes", c40) == ("FF++ c40", "ff++ c40")
    assert family_of("dataset_clips", 1, "x", {"dataset": "DFDC (train part 0)"}) == ("DFDC", "dfd+dfdc")
    assert family_of("train", 1, "faceswap", None) == ("face swap", "train")


def test_robust_augmentation_reencodes_and_shifts_both_classes_alike() -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, size=(4, 64, 64, 3), dtype=np.uint8)
    present = np.array([True, True, False, True])
    cfg = AugmentConfig.robust()
    assert cfg.h264 >= 0.8 and cfg.h264_crf == (18, 40) and cfg.shift > 0 and cfg.noise > 0
    a = augment_clip(crops, present, np.random.default_rng(7), cfg)
    b = augment_clip(crops, present, np.random.default_rng(7), cfg)
    assert np.array_equal(a, b) and not np.array_equal(a, crops)  # one draw per seed, whatever the label
    assert not a[2].any()  # a frame without a face stays black
    shifted = augment_clip(crops, present, np.random.default_rng(1), dataclasses.replace(AugmentConfig.off(), shift=1))
    assert not np.array_equal(shifted, crops) and shifted.shape == crops.shape


def _clip(seed: int, frames: int = 6, size: int = 64) -> FaceClip:
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, size=(frames, 8, 8, 3), dtype=np.uint8)  # smooth images, like faces
    crops = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC) for c in coarse])
    landmarks = np.tile(np.array([[22, 26], [42, 26], [32, 36], [24, 46], [40, 46]], np.float32), (frames, 1, 1))
    return FaceClip(
        crops=crops,
        present=np.ones(frames, bool),
        landmarks=landmarks,
        boxes=np.tile(np.array([0, 0, size, size], np.float32), (frames, 1)),
        scores=np.ones(frames, np.float32),
    )


@pytest.fixture
def paired_pool() -> ClipPool:
    items = [
        (_sample("ffpp_c23_035.mp4", REAL, "g1"), _clip(1)),
        (_sample("ffpp_c23_Deepfakes_035_036.mp4", FAKE, "g1"), _clip(2)),
        (_sample("ffpp_c23_036.mp4", REAL, "g1"), _clip(3)),
    ]
    return ClipPool(items)


def _config(**kw: object) -> TrainConfig:
    base = TrainConfig(steps=3, batch=4, frames=2, lr=2e-3, warmup=1, save_every=0, arch=TINY)
    return dataclasses.replace(base, augment=AugmentConfig.off(), **kw)  # type: ignore[arg-type]


def test_pairs_put_a_fake_beside_its_original_with_the_same_frames(paired_pool: ClipPool) -> None:
    assert [(f.name, r.name) for f, r in paired_pool.pairs] == [("ffpp_c23_Deepfakes_035_036.mp4", "ffpp_c23_035.mp4")]
    batch = make_batch(paired_pool, _config(pair_share=1.0), 0)
    assert batch.kinds == ["real", "fake", "real", "fake"] and batch.labels.tolist() == [0, 1, 0, 1]
    assert batch.twins == []
    real, fake = paired_pool.pairs[0][1].clip.crops, paired_pool.pairs[0][0].clip.crops
    # Without augmentation each pair's clips are the very frames of the original and of the fake, in step.
    for r, f in ((batch.faces[0], batch.faces[1]), (batch.faces[2], batch.faces[3])):
        frames_r = [int(np.argmin([np.abs(_norm(real[t]) - r[i].numpy()).max() for t in range(6)])) for i in range(2)]
        frames_f = [int(np.argmin([np.abs(_norm(fake[t]) - f[i].numpy()).max() for t in range(6)])) for i in range(2)]
        assert frames_r == frames_f


def _norm(crop: np.ndarray) -> np.ndarray:
    from deepfake_core.preprocess import normalize_crops

    return normalize_crops(crop[None])[0]


def test_consistency_twins_are_a_grey_level_off_and_enter_only_the_consistency_term(paired_pool: ClipPool) -> None:
    batch = make_batch(paired_pool, _config(consistency=1.0, consistency_clips=2), 3)
    assert len(batch.kinds) == 6 and batch.kinds[4:] == ["twin", "twin"]
    assert all(batch.kinds[i] == "real" for i in batch.twins)
    for k, i in enumerate(batch.twins):
        diff = (batch.faces[4 + k] - batch.faces[i]).abs()
        # A grey level and at most a pixel: a few hundredths in normalised units on smooth images.
        assert 0 < float(diff.mean()) < 0.1
    logits = torch.zeros(6)
    frame_logits = torch.zeros(6, 2)
    no_twin_loss = loss_fn((logits, frame_logits), batch, 0.5, consistency=1.0)
    moved = logits.clone()
    moved[4:] = 2.0
    with_gap = loss_fn((moved, frame_logits), batch, 0.5, consistency=1.0)
    assert float(with_gap - no_twin_loss) == pytest.approx(4.0)  # (2 - 0)^2, mean over twins
    stripped = Batch(batch.faces[:4], batch.mask[:4], batch.labels[:4], batch.kinds[:4])
    assert float(loss_fn((logits[:4], frame_logits[:4]), stripped, 0.5)) == pytest.approx(float(no_twin_loss))


def test_weight_average_is_what_is_saved_and_a_kept_state_extends_the_run(
    paired_pool: ClipPool, tmp_path: Path
) -> None:
    seen: list[int] = []
    cfg = _config(steps=4, ema=0.5, schedule="constant", consistency=1.0, pair_share=0.5)
    model, losses, _ = train(
        paired_pool,
        cfg,
        tmp_path / "m.pt",
        progress=False,
        keep_state=True,
        on_eval=lambda step, m: seen.append(step),
        eval_every=2,
    )
    assert len(losses) == 4 and seen == [2, 4]
    state = torch.load(tmp_path / "m.pt.state.pt", weights_only=False)
    assert state["step"] == 4 and state["ema"] is not None
    saved, _ = load_checkpoint(tmp_path / "m.pt")
    raw, avg = state["model"], state["ema"]
    differs = [k for k in avg if avg[k].dtype.is_floating_point and not torch.equal(avg[k], raw[k])]
    assert differs  # the average lags the raw weights
    assert all(torch.allclose(saved.state_dict()[k].float(), avg[k].float()) for k in avg)
    _, more, _ = train(paired_pool, dataclasses.replace(cfg, steps=6), tmp_path / "m.pt", progress=False, resume=True)
    assert len(more) == 6 and more[:4] == losses


def test_shared_padding_puts_either_clips_black_bands_on_both() -> None:
    a = np.full((2, 8, 8, 3), 120, np.uint8)
    b = np.full((2, 8, 8, 3), 90, np.uint8)
    a[:, :, :2] = 0  # padded on the left (a face at the frame's edge)
    b[1, 6:] = 0  # padded at the bottom in its second frame
    pa, pb = share_padding(a, b)
    for x in (pa, pb):
        assert not x[:, :, :2].any() and not x[1, 6:].any()
        assert (x[0, 6:, 2:] > 0).all()  # nothing else blackened
    assert (pa[pa > 0] == 120).all() and (pb[pb > 0] == 90).all()


def test_labelled_fakes_get_the_padding_of_the_real_beside_them() -> None:
    real = _clip(1)
    real.crops[:, :, :20] = 0
    fake = _clip(2)
    pool = ClipPool([(_sample("r.mp4", REAL, "a"), real), (_sample("f.mp4", FAKE, "b"), fake)])
    cfg = _config(sbi_share=0.0, match_padding=True)
    batch = make_batch(pool, cfg, 0)
    assert batch.kinds == ["real", "fake", "real", "fake"]
    black = -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225])  # a black pixel, normalised
    fake_left = batch.faces[1, :, :, :, :20].numpy()
    assert np.allclose(fake_left, black[None, :, None, None], atol=1e-5)
    unmatched = make_batch(pool, dataclasses.replace(cfg, match_padding=False), 0)
    assert not np.allclose(unmatched.faces[1, :, :, :, :20].numpy(), black[None, :, None, None], atol=1e-5)


def test_border_bands_black_out_one_or_two_sides_of_every_frame() -> None:
    crops = np.full((3, 40, 40, 3), 100, np.uint8)
    present = np.ones(3, bool)
    cfg = dataclasses.replace(AugmentConfig.off(), border=1.0)
    for seed in range(5):
        out = augment_clip(crops, present, np.random.default_rng(seed), cfg)
        black = out.max(-1) == 0
        assert black.any() and black.mean() < 0.6
        assert (black == black[0]).all()  # the same band on every frame of the clip
        edges = [black[0, 0].all(), black[0, -1].all(), black[0, :, 0].all(), black[0, :, -1].all()]
        assert 1 <= sum(edges) <= 2
