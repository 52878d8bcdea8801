"""Face tracks: linking, the main track, the analysed tracks (deepfake_core.face_tracks)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfake_core.face_tracks import analysed_tracks, iou, main_face_track
from deepfake_core.mtcnn_cascade import FrameFaces


def faces(*boxes: tuple[float, float, float, float], score: float = 0.99) -> FrameFaces:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return FrameFaces(
        boxes=b, scores=np.full(len(b), score, np.float32), landmarks=np.zeros((len(b), 5, 2), np.float32)
    )


def test_iou() -> None:
    box = np.array([0, 0, 10, 10], np.float32)
    others = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou(box, others), [1.0, 1 / 3, 0.0], atol=1e-6)


def test_track_follows_one_person_that_moves_far_between_samples() -> None:
    # Sampled frames are far apart in time: the face jumps ~1.5 face sizes between frames, no overlap.
    frames = [faces((100 + 110 * i, 100, 180 + 110 * i, 180)) for i in range(5)]
    track = main_face_track(frames)
    assert track.present.all()
    np.testing.assert_allclose(track.boxes[4], [540, 100, 620, 180])


def test_main_track_is_the_person_seen_most_not_the_biggest_box_once() -> None:
    person = (200, 100, 300, 200)
    frames = [faces(person) for _ in range(6)]
    frames[3] = faces(person, (600, 50, 900, 350))  # a large face in one frame only
    track = main_face_track(frames)
    assert track.present.all()
    assert all(tuple(track.boxes[i]) == person for i in range(6))


def test_two_people_are_not_swapped_and_gaps_are_masked() -> None:
    left, right = (50, 100, 150, 200), (600, 100, 720, 220)
    frames = [faces(left, right), faces(right, left), faces(right), faces(left, right)]
    track = main_face_track(frames)  # right is bigger and present in every frame
    assert track.present.all()
    assert all(tuple(track.boxes[i]) == right for i in range(4))
    frames = [faces(left, right), faces(left), faces(left, right)]
    track = main_face_track(frames)
    # left is seen in all three frames; in frame 1 the right face is absent, the track must not jump
    assert [tuple(b) for b in track.boxes] == [left, left, left]


def test_no_detections_gives_an_empty_track() -> None:
    track = main_face_track([FrameFaces(), FrameFaces()])
    assert not track.found and track.present.tolist() == [False, False]


def test_analysed_tracks_drop_fleeting_and_tiny_faces_and_count_the_people_left_out() -> None:
    people = [(60 + 150 * k, 100, 160 + 150 * k - 4 * k, 200 - 4 * k) for k in range(6)]  # 6 people, shrinking
    blip, tiny = (900, 400, 1000, 500), (10, 400, 25, 415)  # a false detection in one frame; a tiny face
    frames = [faces(*people, *([blip] if f == 2 else []), tiny) for f in range(8)]
    chosen = analysed_tracks(frames, max_faces=4)
    assert len(chosen.tracks) == 4 and chosen.unanalysed == 2  # the one-frame face and the tiny one are not people
    assert [tuple(t.boxes[0]) for t in chosen.tracks] == [tuple(map(float, p)) for p in people[:4]]  # biggest first
    assert all(t.present.all() for t in chosen.tracks)


def test_analysed_tracks_always_keep_the_main_face() -> None:
    frames = [faces((200, 100, 300, 200)) if f == 3 else FrameFaces() for f in range(8)]
    chosen = analysed_tracks(frames)
    assert len(chosen.tracks) == 1 and chosen.tracks[0].present.sum() == 1 and chosen.unanalysed == 0
    assert analysed_tracks([FrameFaces(), FrameFaces()]).tracks == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 600), st.integers(0, 300), st.integers(20, 160)), max_size=5),
        min_size=1,
        max_size=12,
    )
)
def test_the_first_analysed_track_is_the_main_face_track_of_before(frames_spec: list) -> None:
    """The single-face answer is unchanged (issue 14): the most prominent analysed track is exactly the track the
    ensemble classified before, whatever the detections."""
    frames = [faces(*[(x, y, x + s, y + s) for x, y, s in spec]) if spec else FrameFaces() for spec in frames_spec]
    main = main_face_track(frames)
    chosen = analysed_tracks(frames)
    if not main.found:
        assert chosen.tracks == []
        return
    first = chosen.tracks[0]
    np.testing.assert_array_equal(first.present, main.present)
    np.testing.assert_array_equal(first.boxes, main.boxes)
