"""Following faces between key frames: same boxes as detecting on every frame, at a fraction of the cascade runs."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_core import face_following
from deepfake_core.face_following import key_frames, track_faces
from deepfake_core.face_tracks import iou, main_face_track
from deepfake_core.mtcnn_cascade import DetectorParams, MtcnnNets, detect_faces
from tests.media import face_frames


def _clip(width: int, height: int, count: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """`count` frames spread over a 10 s moving-face clip (as T evenly spaced samples would be), and true boxes."""
    pairs = list(face_frames(width, height, fps=count / 10, seconds=10))
    return np.stack([f for f, _ in pairs]), np.array([b for _, b in pairs], np.float32)


def test_key_frames_are_every_stride_th_and_the_last_of_each_video() -> None:
    key = key_frames(np.repeat([0, 1], [10, 5]), 4)
    assert np.flatnonzero(key).tolist() == [0, 4, 8, 9, 10, 14]
    assert key_frames(np.zeros(5, np.int64), 1).all()


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (640, 360), (360, 640)])
def test_followed_boxes_match_detection_on_every_frame(nets: MtcnnNets, width: int, height: int) -> None:
    frames, truth = _clip(width, height)
    every = main_face_track(detect_faces(frames, nets))
    followed = main_face_track(track_faces(frames, nets))
    assert every.present.all() and followed.present.all()
    overlap = np.array([iou(every.boxes[i], followed.boxes[i : i + 1])[0] for i in range(len(frames))])
    to_truth = np.array([iou(truth[i], followed.boxes[i : i + 1])[0] for i in range(len(frames))])
    print(f"{width}x{height}: IoU with every-frame detection min {overlap.min():.3f} mean {overlap.mean():.3f}")
    assert overlap.min() >= 0.8 and overlap.mean() >= 0.9
    assert to_truth.min() >= 0.5


def test_the_cascade_runs_on_the_key_frames_only_when_following_works(
    nets: MtcnnNets, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames, _ = _clip(640, 360)
    cascaded: list[int] = []
    real = face_following.detect_scaled

    def counting(images: np.ndarray, *args: object) -> object:
        cascaded.append(len(images))
        return real(images, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(face_following, "detect_scaled", counting)
    track_faces(frames, nets, DetectorParams(key_stride=4))
    assert cascaded == [9, 0]  # frames 0, 4, ..., 28 and 31; no fallback on a smoothly moving face
    cascaded.clear()
    track_faces(frames, nets, DetectorParams(key_stride=1))
    assert cascaded == [32, 0]


def test_a_face_gone_between_key_frames_is_not_invented(nets: MtcnnNets) -> None:
    frames, _ = _clip(640, 360, count=9)
    blank = np.full_like(frames[0], 128)
    frames[2] = frames[5] = blank  # key frames 0, 4, 8 keep the face
    track = main_face_track(track_faces(frames, nets, DetectorParams(key_stride=4)))
    assert track.present.tolist() == [True, True, False, True, True, False, True, True, True]


def test_stride_one_is_detection_on_every_frame(nets: MtcnnNets) -> None:
    frames, _ = _clip(640, 360, count=6)
    for a, b in zip(track_faces(frames, nets, DetectorParams(key_stride=1)), detect_faces(frames, nets), strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_a_videos_faces_do_not_depend_on_what_it_is_batched_with(nets: MtcnnNets) -> None:
    a, _ = _clip(640, 360, count=12)
    b = a[:, ::-1].copy()  # the face mirrored: a different path
    b[3] = 128  # and a frame without it, so b takes the fallback path
    alone = track_faces(a, nets)
    both = track_faces(np.concatenate([a, b]), nets, video_ids=np.repeat([0, 1], 12))
    for x, y in zip(alone, both[:12], strict=True):
        np.testing.assert_array_equal(x.boxes, y.boxes)
    b_alone = track_faces(b, nets)
    for x, y in zip(b_alone, both[12:], strict=True):
        np.testing.assert_array_equal(x.boxes, y.boxes)
