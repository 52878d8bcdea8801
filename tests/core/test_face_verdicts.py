"""The video's verdict from its faces' verdicts (deepfake_core.face_verdicts)."""

from __future__ import annotations

import numpy as np

from deepfake_core.face_verdicts import video_verdict


def test_the_most_suspicious_face_decides() -> None:
    present = np.ones((3, 4), bool)
    assert video_verdict(np.array([0.2, 0.9, 0.4]), present) == 1
    assert video_verdict(np.array([0.7, 0.7, 0.1]), present) == 0  # a tie goes to the more prominent face


def test_tracks_without_a_face_never_decide() -> None:
    present = np.array([[True, True], [False, False]])
    assert video_verdict(np.array([0.3, 0.5]), present) == 0
    assert video_verdict(np.array([0.5]), np.zeros((1, 2), bool)) == 0  # no face at all: the one empty row
