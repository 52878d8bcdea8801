"""The NumPy MTCNN cascade with ONNX Runtime nets (the same ONNX files Triton serves)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.data import astronaut

from deepfake_core.face_tracks import iou
from deepfake_core.mtcnn_cascade import (
    DetectorParams,
    MtcnnNets,
    batched_nms,
    detect_faces,
    nms,
    pyramid_scales,
)

ASTRONAUT_FACE = np.array([180, 61, 268, 174], np.float32)  # facenet-pytorch's own MTCNN, within 2 px


def test_finds_the_astronaut_face(nets: MtcnnNets) -> None:
    [found] = detect_faces(astronaut()[None], nets, DetectorParams(min_face_fraction=0.04))
    assert len(found.boxes) == 1 and found.scores[0] > 0.99
    assert float(iou(ASTRONAUT_FACE, found.boxes)[0]) > 0.9
    np.testing.assert_allclose(found.boxes[0], ASTRONAUT_FACE, atol=3)
    left_eye, right_eye = found.landmarks[0, 0], found.landmarks[0, 1]
    assert left_eye[0] < right_eye[0] and ASTRONAUT_FACE[1] < left_eye[1] < ASTRONAUT_FACE[3]


def test_batched_frames_give_per_frame_results(nets: MtcnnNets) -> None:
    img = astronaut()
    blank = np.full_like(img, 128)
    shifted = np.full_like(img, 128)
    shifted[:, 100:] = img[:, :-100]
    results = detect_faces(np.stack([img, blank, shifted]), nets, DetectorParams(min_face_fraction=0.04))
    assert len(results) == 3 and len(results[0].boxes) == 1 and len(results[1].boxes) == 0
    best = results[2].boxes[np.argmax(results[2].scores)]  # MTCNN also fires weakly on the suit's patch here
    assert float(iou(ASTRONAUT_FACE + [100, 0, 100, 0], best[None])[0]) > 0.85


def test_large_frames_are_detected_at_reduced_scale_in_original_coordinates(nets: MtcnnNets) -> None:
    big = np.kron(astronaut(), np.ones((3, 3, 1), np.uint8))  # 1536 x 1536
    [found] = detect_faces(big[None], nets, DetectorParams(detect_max_side=512, min_face_fraction=0.04))
    np.testing.assert_allclose(found.boxes[0], ASTRONAUT_FACE * 3, atol=9)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), 0.5).tolist() == [1, 2]
    # the same boxes in different images never suppress each other
    assert sorted(batched_nms(boxes[:2], np.array([0.5, 0.9]), np.array([0, 1]), 0.5).tolist()) == [0, 1]


def test_pyramid_scales_cover_min_face_to_whole_frame() -> None:
    scales = pyramid_scales(360, 640, min_face=24, factor=0.709)
    assert scales[0] == pytest.approx(0.5)
    assert 360 * scales[-1] >= 12 and 360 * scales[-1] * 0.709 < 12


def test_a_videos_faces_do_not_depend_on_what_it_is_batched_with(nets: MtcnnNets) -> None:
    img = astronaut()
    video = np.stack([img] * 6)
    small = np.full_like(video, 128)
    small[:, 300:400, 300:400] = img[40:240:2, 150:350:2][:100, :100]  # a second, small face
    alone = detect_faces(video, nets, DetectorParams(probe_frames=2))
    both = detect_faces(
        np.concatenate([video, small]), nets, DetectorParams(probe_frames=2), video_ids=np.repeat([0, 1], 6)
    )
    for a, b in zip(alone, both[:6], strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_candidate_caps_keep_the_face(nets: MtcnnNets) -> None:
    [capped] = detect_faces(
        astronaut()[None], nets, DetectorParams(min_face_fraction=0.04, rnet_per_frame=3, onet_per_frame=1)
    )
    assert len(capped.boxes) == 1 and float(iou(ASTRONAUT_FACE, capped.boxes)[0]) > 0.9
