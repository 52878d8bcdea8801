"""The ensemble's request and answer helpers shared by the CLI client and the gateway
(deepfake_core.ensemble_contract)."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfake_core.ensemble_contract import (
    ALL_OUTPUTS,
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
    assert len(ALL_OUTPUTS) == len(set(ALL_OUTPUTS)) == 15
    assert set(JSON_OUTPUTS) < set(VERDICT_OUTPUTS) < set(ALL_OUTPUTS)
    for client in (grpcclient, httpclient):
        assert [o.name() for o in requested_outputs(client, ["FACE_CROPS"])] == ["FACE_CROPS"]
        for bad in ([], ["PROB_FAKE", "VERDICT"]):
            with pytest.raises(ValueError, match="ask for one or more of"):
                requested_outputs(client, bad)
