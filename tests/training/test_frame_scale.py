"""training.frame_scale: a temporal checkpoint's threshold folded into its video head and its frame scores moved onto
the video's scale; verdicts unchanged."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from deepfake_core.classifier import untrained_classifier
from training.calibrate import fit_frame_scale
from training.frame_scale import rescale, score_rows

SMALL = {"width_mult": 0.25, "depth_mult": 0.25}


def _clips(count: int, frames: int = 3, size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    clips = []
    for i in range(count):
        crops = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
        present = np.ones(frames, bool)
        present[i % frames] = i % 2 == 0  # some frames without a face
        clips.append((crops, present))
    return clips


def test_threshold_folded_and_frames_on_the_video_scale() -> None:
    model = untrained_classifier(SMALL)
    original = copy.deepcopy(model)
    clips = _clips(12)
    before = score_rows(original, clips)
    threshold = 0.62
    stats = rescale(model, threshold, before)
    after = score_rows(model, clips)

    shift = -math.log(threshold / (1 - threshold))
    assert stats["threshold_folded"] == threshold and stats["video_logit_shift"] == pytest.approx(shift)
    for (v0, _), (v1, _) in zip(before, after, strict=True):
        assert v1 == pytest.approx(v0 + shift, abs=1e-5)  # same ranking; FAKE at 0.5 exactly when p >= threshold
    # Refitting on the rescaled model finds nothing left to move: frames already predict their video's logit.
    a, b = fit_frame_scale(np.array([v for v, _ in after]), np.array([np.mean(f) for _, f in after]))
    assert a == pytest.approx(1.0, abs=1e-3) and b == pytest.approx(0.0, abs=1e-3)
    assert 0.0 <= stats["frames_on_the_videos_side_before"] <= 1.0 and 0.0 <= stats["after"] <= 1.0
