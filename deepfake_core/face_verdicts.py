"""The video's verdict from its faces' verdicts: one manipulated person makes the video manipulated.

The video's score is the highest score among the tracks that have a face (the maximum), and the track that has it is
the deciding face, whose boxes, landmarks and per-frame scores the ensemble's single-face outputs carry. Ties go to
the more prominent track (the lower index); a video without any face is decided by its one empty row.
"""

from __future__ import annotations

import numpy as np


def video_verdict(track_probs: np.ndarray, present: np.ndarray) -> int:
    """Index of the deciding track: the highest of `track_probs` [F] among tracks present in any frame [F, T]."""
    probs = np.asarray(track_probs, dtype=np.float64).reshape(-1)
    seen = np.asarray(present, dtype=bool).reshape(len(probs), -1).any(axis=1)
    if not seen.any():
        return 0
    return int(np.argmax(np.where(seen, probs, -np.inf)))
