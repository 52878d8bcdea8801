"""The ensemble's request and answer helpers shared by the CLI client and the gateway (deepfake_core.detector_io)."""

from __future__ import annotations

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from deepfake_core.detector_io import (
    ALL_OUTPUTS,
    JSON_OUTPUTS,
    MAPS_OUTPUT,
    VERDICT_OUTPUTS,
    clean_message,
    ensemble_request,
    requested_outputs,
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


def test_requested_outputs_take_any_non_empty_subset_of_the_ensembles_outputs() -> None:
    assert len(ALL_OUTPUTS) == len(set(ALL_OUTPUTS)) == 15
    assert set(JSON_OUTPUTS) < set(VERDICT_OUTPUTS) < set(ALL_OUTPUTS)
    for client in (grpcclient, httpclient):
        assert [o.name() for o in requested_outputs(client, ["FACE_CROPS"])] == ["FACE_CROPS"]
        for bad in ([], ["PROB_FAKE", "VERDICT"]):
            with pytest.raises(ValueError, match="ask for one or more of"):
                requested_outputs(client, bad)
