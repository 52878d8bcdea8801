"""Face tracks across the sampled frames: detections linked into tracks, the main track, the analysed tracks.

Shared by Triton's face_detector model, face following (``deepfake_core.face_following``) and training, so that
the faces the classifier sees are chosen by one piece of code. The crops are cut by ``deepfake_core.crop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepfake_core import constants as C
from deepfake_core.mtcnn_cascade import FrameFaces

MAX_TRACK_GAP = 4  # sampled frames a track may miss before it can no longer be continued
# Sampled frames can be seconds apart, so a face may move a lot between them: a detection continues a track when it
# overlaps the track's last box, or its centre is within MAX_CENTRE_SHIFT face sizes of it, and the face size
# changed less than MAX_SIZE_RATIO times.
MIN_TRACK_IOU = 0.2
MAX_CENTRE_SHIFT = 2.0
MAX_SIZE_RATIO = 2.0
# Which tracks are people worth a verdict (`analysed_tracks`): besides the most prominent track (always analysed),
# a track must be seen in at least MIN_TRACK_FRAME_FRACTION of the sampled frames (and never fewer than
# MIN_TRACK_FRAMES), and its median face size must be at least MIN_TRACK_SIZE_RATIO of the most prominent track's:
# one-frame false detections and tiny background faces are dropped.
MIN_TRACK_FRAMES = 2
MIN_TRACK_FRAME_FRACTION = 1.0 / 8.0
MIN_TRACK_SIZE_RATIO = 0.25


@dataclass
class FaceTrack:
    """One face followed over the sampled frames: per frame a box or nothing."""

    boxes: np.ndarray  # float32 [T, 4]; rows of frames without the face are zeros
    scores: np.ndarray  # float32 [T]; 0 where the face is absent
    landmarks: np.ndarray  # float32 [T, 5, 2]
    present: np.ndarray  # bool [T]

    @property
    def found(self) -> bool:
        return bool(self.present.any())


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with each of boxes (x1, y1, x2, y2)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-6)


def link_cost(previous: np.ndarray, box: np.ndarray) -> float | None:
    """How far `box` is from a track's last box (lower is closer), or None when it cannot be the same face."""
    size_a = np.sqrt(max((previous[2] - previous[0]) * (previous[3] - previous[1]), 1e-6))
    size_b = np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1e-6))
    if max(size_a, size_b) / min(size_a, size_b) > MAX_SIZE_RATIO:
        return None
    shift = float(
        np.hypot((box[0] + box[2] - previous[0] - previous[2]) / 2, (box[1] + box[3] - previous[1] - previous[3]) / 2)
    )
    shift /= (size_a + size_b) / 2
    if shift > MAX_CENTRE_SHIFT and float(iou(previous, box[None])[0]) < MIN_TRACK_IOU:
        return None
    return shift


def main_face_track(frames: Sequence[FrameFaces]) -> FaceTrack:
    """The most prominent face track (see `link_tracks`); every frame absent when no face was found."""
    tracks = link_tracks(frames, limit=1)
    if tracks:
        return tracks[0]
    t = len(frames)
    return FaceTrack(
        boxes=np.zeros((t, 4), np.float32),
        scores=np.zeros(t, np.float32),
        landmarks=np.zeros((t, 5, 2), np.float32),
        present=np.zeros(t, bool),
    )


@dataclass
class AnalysedTracks:
    """The tracks a video's verdict is made of, most prominent first, and how many more people were left out."""

    tracks: list[FaceTrack]
    unanalysed: int  # tracks that passed the rule but were beyond `max_faces`


def _median_size(track: FaceTrack) -> float:
    boxes = track.boxes[track.present]
    return float(
        np.median(np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)))
    )


def analysed_tracks(frames: Sequence[FrameFaces], max_faces: int = C.MAX_FACES) -> AnalysedTracks:
    """The up to `max_faces` most prominent tracks that pass the rule above (see the MIN_TRACK_* constants).

    Prominence is `link_tracks`' weight: presence x size x detector score. The most prominent track is always
    analysed, so a single-face video gets the same verdict as with the main face alone.
    """
    tracks = link_tracks(frames)
    if not tracks:
        return AnalysedTracks(tracks=[], unanalysed=0)
    t = len(frames)
    min_frames = min(t, max(MIN_TRACK_FRAMES, int(np.ceil(MIN_TRACK_FRAME_FRACTION * t))))
    main_size = _median_size(tracks[0])
    kept = [tracks[0]] + [
        track
        for track in tracks[1:]
        if int(track.present.sum()) >= min_frames and _median_size(track) >= MIN_TRACK_SIZE_RATIO * main_size
    ]
    return AnalysedTracks(tracks=kept[: max(1, max_faces)], unanalysed=max(0, len(kept) - max(1, max_faces)))


def link_tracks(frames: Sequence[FrameFaces], limit: int | None = None) -> list[FaceTrack]:
    """Link detections into tracks; the `limit` most prominent ones, most prominent first.

    Per frame, (track, detection) pairs are assigned greedily, closest first, each track and detection once. A
    track's weight is the sum over its frames of score times sqrt(box area), so a face seen large in many frames
    beats a bigger face seen once. Frames where the chosen person was not detected are marked absent (the
    classifier masks them) rather than filled with another face.
    """
    t = len(frames)
    tracks: list[dict[int, int]] = []  # frame -> detection index
    last: list[tuple[int, np.ndarray]] = []  # (frame, box) last seen per track
    for f, faces in enumerate(frames):
        pairs = []
        for k, (seen, previous) in enumerate(last):
            if f - seen > MAX_TRACK_GAP:
                continue
            for d in range(len(faces.boxes)):
                cost = link_cost(previous, faces.boxes[d])
                if cost is not None:
                    pairs.append((cost, k, d))
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        for _, k, d in sorted(pairs):
            if k in used_tracks or d in used_dets:
                continue
            used_tracks.add(k)
            used_dets.add(d)
            tracks[k][f] = d
            last[k] = (f, faces.boxes[d])
        for d in range(len(faces.boxes)):
            if d not in used_dets:
                tracks.append({f: d})
                last.append((f, faces.boxes[d]))

    def weight(track: dict[int, int]) -> float:
        total = 0.0
        for f, d in track.items():
            b = frames[f].boxes[d]
            total += float(frames[f].scores[d]) * float(np.sqrt(max((b[2] - b[0]) * (b[3] - b[1]), 0.0)))
        return total

    out = []
    for chosen in sorted(tracks, key=weight, reverse=True)[:limit]:
        track = FaceTrack(
            boxes=np.zeros((t, 4), np.float32),
            scores=np.zeros(t, np.float32),
            landmarks=np.zeros((t, 5, 2), np.float32),
            present=np.zeros(t, bool),
        )
        for f, d in chosen.items():
            track.boxes[f] = frames[f].boxes[d]
            track.scores[f] = frames[f].scores[d]
            track.landmarks[f] = frames[f].landmarks[d]
            track.present[f] = True
        out.append(track)
    return out
