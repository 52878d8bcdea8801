"""The ensemble's request and answer helpers shared by the CLI client and the gateway
(deepfake_core.ensemble_contract)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfake_core.ensemble_contract import (
    ALL_OUTPUTS,
    ENSEMBLE,
    JSON_OUTPUTS,
    MAPS_OUTPUT,
    VERDICT_OUTPUTS,
    DetectorResult,
    clean_message,
    ensemble_request,
    requested_outputs,
    stated_confidence,
)


def test_clean_message_keeps_the_models_words() -> None:
    raw = "in ensemble 'deepfake_detector', not a video: no video stream found (audio only?)"
    assert clean_message(raw) == "not a video: no video stream found (audio only?)"
    assert clean_message(None) == clean_message("  ") == "the video was rejected"


def test_ensemble_request_for_both_protocols() -> None:
    video = b"\x00\x01\x02 video bytes"
    for client in (grpcclient, httpclient):
        inputs, outputs = ensemble_request(client, video, 8, [MAPS_OUTPUT])
        assert [(i.name(), i.shape(), i.datatype()) for i in inputs] == [
            ("VIDEO", [1, len(video)], "UINT8"),
            ("NUM_FRAMES", [1, 1], "INT32"),
        ]
        assert [o.name() for o in outputs] == [*VERDICT_OUTPUTS, MAPS_OUTPUT]
        inputs, outputs = ensemble_request(client, video)
        assert [i.name() for i in inputs] == ["VIDEO"] and len(outputs) == len(VERDICT_OUTPUTS)


@settings(max_examples=300, deadline=None)
@given(
    prob=st.floats(min_value=0.0, max_value=1.0),
    threshold=st.one_of(st.just(0.5), st.floats(min_value=0.01, max_value=0.99)),
)
def test_stated_class_confidence_is_at_least_half(prob: float, threshold: float) -> None:
    """Whatever the probability (and whatever threshold a caller passes), the class the verdict states comes with
    a confidence of at least 50 %; at the served threshold 0.5 it is max(p, 1 - p)."""
    confidence = stated_confidence(prob, threshold)
    assert 0.5 <= confidence <= 1.0
    if threshold == 0.5:
        assert confidence == pytest.approx(max(prob, 1.0 - prob))


def test_verdict_json_reads_the_same_way_as_the_probability() -> None:
    """``probability_fake >= 0.5`` exactly when the verdict is FAKE, and the frames' scores share its scale."""
    t = 4
    for prob in (0.0, 0.2, 0.4999, 0.5, 0.51, 0.648, 0.9, 1.0):
        result = DetectorResult(
            prob_fake=prob,
            video_logit=0.0,
            frame_scores=np.full(t, prob, np.float32),
            face_found=True,
            has_face=np.ones(t, bool),
            face_boxes=np.zeros((t, 4), np.float32),
            landmarks=np.zeros((t, 5, 2), np.float32),
            face_scores=np.ones(t, np.float32),
            frame_indices=np.arange(t),
            timestamps=np.arange(t, dtype=np.float32),
            fps=25.0,
            frame_count=t,
            width=64,
            height=64,
        )
        answer = result.to_json()
        assert answer["threshold"] == 0.5
        assert (answer["predicted_class"] == "FAKE") == (answer["probability_fake"] >= 0.5)
        assert answer["confidence"] >= 50.0


def test_requested_outputs_take_any_non_empty_subset_of_the_ensembles_outputs() -> None:
    config = (Path(__file__).resolve().parents[2] / "model_repository" / ENSEMBLE / "config.pbtxt").read_text()
    assert len(ALL_OUTPUTS) == len(set(ALL_OUTPUTS))
    assert set(ALL_OUTPUTS) == set(re.findall(r'\{ name: "(\w+)" data_type', config)) - {"VIDEO", "NUM_FRAMES"}
    assert set(JSON_OUTPUTS) < set(VERDICT_OUTPUTS) < set(ALL_OUTPUTS)
    for client in (grpcclient, httpclient):
        assert [o.name() for o in requested_outputs(client, ["FACE_CROPS"])] == ["FACE_CROPS"]
        for bad in ([], ["PROB_FAKE", "VERDICT"]):
            with pytest.raises(ValueError, match="ask for one or more of"):
                requested_outputs(client, bad)


def _two_faces(t: int = 4) -> DetectorResult:
    """An answer with two analysed faces; the second (smaller, seen in frames 1-2) is the suspicious one."""
    has = np.array([[True] * t, [False, True, True, False]])
    boxes = np.zeros((2, t, 4), np.float32)
    boxes[0] = (10, 10, 50, 50)
    boxes[1, 1:3] = (60, 10, 80, 30)
    return DetectorResult(
        prob_fake=0.8,
        frame_scores=np.full(t, 0.8, np.float32),
        face_found=True,
        has_face=has[1],
        face_boxes=boxes[1],
        frame_indices=np.arange(t) * 10,
        timestamps=np.arange(t, dtype=np.float32) * 0.4,
        fps=25.0,
        frame_count=10 * t,
        width=96,
        height=64,
        track_prob_fake=np.array([0.2, 0.8], np.float32),
        track_boxes=boxes,
        track_has_face=has,
        track_frame_scores=np.array([[0.2] * t, [0.0, 0.7, 0.9, 0.0]], np.float32),
        deciding_face=1,
        unanalysed_faces=3,
    )


def test_faces_json_names_each_face_and_the_deciding_one() -> None:
    answer = _two_faces().to_json()
    assert answer["predicted_class"] == "FAKE" and answer["deciding_face"] == 1 and answer["faces_not_analysed"] == 3
    main, other = answer["faces"]
    assert (main["track_id"], main["predicted_class"], main["deciding"]) == (0, "REAL", False)
    assert (other["track_id"], other["predicted_class"], other["deciding"]) == (1, "FAKE", True)
    assert other["confidence"] == 80.0 and main["confidence"] == 80.0
    assert (other["first_seen"], other["last_seen"]) == (pytest.approx(0.4), pytest.approx(0.8))
    assert [f["frame_index"] for f in other["frames"]] == [10, 20]
    assert other["frames"][1] == {
        "frame_index": 20,
        "timestamp": pytest.approx(0.8),
        "score": 0.9,
        "box": [60.0, 10.0, 80.0, 30.0],
    }
    assert len(main["frames"]) == 4


def test_faces_json_is_empty_without_faces_or_without_the_per_face_outputs() -> None:
    result = _two_faces()
    result.face_found = False
    assert result.to_json()["faces"] == [] and result.to_json()["deciding_face"] is None
    result = _two_faces()
    result.track_prob_fake = None
    assert result.to_json()["faces"] == []
