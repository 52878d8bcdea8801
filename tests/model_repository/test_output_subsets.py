"""Any non-empty subset of the deepfake_detector ensemble's outputs, over gRPC and HTTP, with or without NUM_FRAMES
(issue 13): exactly those outputs come back, equal to the same outputs of a request for all of them, and the steps
that only the unrequested outputs need do not run.

Round trips are kept few: one full request per (protocol, NUM_FRAMES) is computed once for the module, and every
subset request is compared with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from deepfake_core.ensemble_contract import (
    ALL_OUTPUTS,
    ENSEMBLE,
    TRACK_MAPS_OUTPUT,
    VERDICT_OUTPUTS,
    ensemble_inputs,
    requested_outputs,
)
from gateway.services.inference.triton import _request as gateway_request
from tests.media import face_video, faceless_video
from triton_runtime.process import TritonProcess

PROTOCOLS = ("grpc", "http")
MODULES: dict[str, Any] = {"grpc": grpcclient, "http": httpclient}
FRAMES = 6  # NUM_FRAMES of the cheap requests
GATEWAY_OUTPUTS = tuple(o.name() for o in gateway_request(b"\0", FRAMES, True)[1])
SUBSETS = {
    "verdict_pair": ("PROB_FAKE", "FACE_FOUND"),
    "gateway": GATEWAY_OUTPUTS,
}
Answer = tuple[list[str], dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("subsets")
    face_video(d / "face.mp4", width=480, height=270, fps=25, seconds=1.6)
    faceless_video(d / "faceless.mp4", width=480, height=270, fps=25, seconds=1.0)
    return {"face": (d / "face.mp4").read_bytes(), "faceless": (d / "faceless.mp4").read_bytes()}


@pytest.fixture(scope="module")
def clients(triton: TritonProcess) -> Iterator[dict[str, Any]]:
    made = {
        "grpc": grpcclient.InferenceServerClient(triton.grpc_url),
        "http": httpclient.InferenceServerClient(triton.http_url, network_timeout=120.0),
    }
    yield made
    for client in made.values():
        client.close()


def ask(clients: dict[str, Any], protocol: str, video: bytes, outputs: tuple[str, ...], frames: int | None) -> Answer:
    """One plain tritonclient request: the output names in the server's answer, in order, and their values."""
    module = MODULES[protocol]
    inputs = ensemble_inputs(module, video, frames)
    result = clients[protocol].infer(ENSEMBLE, inputs, outputs=requested_outputs(module, outputs))
    response = result.get_response()
    names = [o.name for o in response.outputs] if protocol == "grpc" else [o["name"] for o in response["outputs"]]
    return names, {name: result.as_numpy(name) for name in names}


def assert_same(name: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, got.shape, want.dtype, want.shape)
    if np.issubdtype(want.dtype, np.floating):
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-5, atol=1e-5, err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


def assert_subset(answer: Answer, outputs: tuple[str, ...], full: dict[str, np.ndarray]) -> None:
    names, values = answer
    assert sorted(names) == sorted(outputs), "exactly the requested outputs"
    for name in outputs:
        assert_same(name, values[name], full[name])


@pytest.fixture(scope="module")
def full(clients: dict[str, Any], videos: dict[str, bytes]) -> dict[tuple[str, int | None], dict[str, np.ndarray]]:
    """Every output of the face video, per (protocol, NUM_FRAMES): the reference of every subset."""
    answers = {}
    for protocol in PROTOCOLS:
        for frames in (None, FRAMES):
            names, values = ask(clients, protocol, videos["face"], ALL_OUTPUTS, frames)
            assert sorted(names) == sorted(ALL_OUTPUTS)
            answers[protocol, frames] = values
    return answers


def test_no_ensemble_output_is_also_a_step_input(model_repository: Path) -> None:
    """Triton's pruning treats an unrequested ensemble output as unused even when a step consumes it: such a tensor
    made every request without FACE_BOXES and HAS_FACE fail ("unexpected deadlock")."""
    config = text_format.Parse((model_repository / ENSEMBLE / "config.pbtxt").read_text(), mc.ModelConfig())
    outputs = {o.name for o in config.output}
    steps = config.ensemble_scheduling.step
    consumed = {tensor for step in steps for tensor in step.input_map.values()}
    assert not outputs & consumed
    produced = [tensor for step in steps for tensor in step.output_map.values()]
    assert sorted(t for t in produced if t in outputs) == sorted(outputs), "each output made by exactly one step"


@pytest.mark.parametrize("frames", [None, FRAMES], ids=["default_frames", "num_frames"])
def test_all_outputs_agree_across_protocols(full: dict[tuple[str, int | None], dict], frames: int | None) -> None:
    grpc, http = full["grpc", frames], full["http", frames]
    for name in ALL_OUTPUTS:
        assert_same(name, http[name], grpc[name])
    assert grpc["FRAME_INDICES"].shape == (1, frames or 32)
    assert bool(grpc["FACE_FOUND"][0, 0]) and 0.0 <= float(grpc["PROB_FAKE"][0, 0]) <= 1.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", ALL_OUTPUTS)
def test_each_output_alone(clients: dict, videos: dict, full: dict, protocol: str, name: str) -> None:
    answer = ask(clients, protocol, videos["face"], (name,), FRAMES)
    assert_subset(answer, (name,), full[protocol, FRAMES])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_issues_call_prob_fake_alone_without_num_frames(
    clients: dict, videos: dict, full: dict, protocol: str
) -> None:
    """The call of issue 13, which failed with 'unexpected deadlock' while the repository broke the rule above."""
    answer = ask(clients, protocol, videos["face"], ("PROB_FAKE",), None)
    assert_subset(answer, ("PROB_FAKE",), full[protocol, None])


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("frames", [None, FRAMES], ids=["default_frames", "num_frames"])
@pytest.mark.parametrize("subset", list(SUBSETS))
def test_subsets(clients: dict, videos: dict, full: dict, protocol: str, frames: int | None, subset: str) -> None:
    answer = ask(clients, protocol, videos["face"], SUBSETS[subset], frames)
    assert_subset(answer, SUBSETS[subset], full[protocol, frames])


def test_the_gateways_set_is_the_verdict_with_every_faces_feature_maps() -> None:
    assert (*VERDICT_OUTPUTS, TRACK_MAPS_OUTPUT) == GATEWAY_OUTPUTS and "FACE_CROPS" not in GATEWAY_OUTPUTS


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_faceless_video_with_a_subset(clients: dict, videos: dict, protocol: str) -> None:
    names, values = ask(clients, protocol, videos["faceless"], ("FACE_FOUND", "PROB_FAKE"), FRAMES)
    assert sorted(names) == ["FACE_FOUND", "PROB_FAKE"]
    assert not bool(values["FACE_FOUND"][0, 0])  # NO_FACE, not an error
    assert float(values["PROB_FAKE"][0, 0]) == 0.5


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_video_with_a_subset_is_invalid_argument(clients: dict, videos: dict, protocol: str) -> None:
    for video, frames, words in ((b"this is not a video\n" * 50, None, "video"), (videos["face"], 0, "NUM_FRAMES")):
        with pytest.raises(InferenceServerException) as info:
            ask(clients, protocol, video, ("PROB_FAKE",), frames)
        assert str(info.value.status()) in ("StatusCode.INVALID_ARGUMENT", "400"), info.value
        assert words in info.value.message(), info.value.message()


def executions(client: grpcclient.InferenceServerClient, models: dict[str, int]) -> dict[str, int]:
    """Triton's inference_count of each model."""
    stats = (client.get_inference_statistics(m, as_json=True)["model_stats"][0] for m in models)
    return {m: int(s.get("inference_count", 0)) for m, s in zip(models, stats, strict=True)}


def settled(client: grpcclient.InferenceServerClient, want: dict[str, int], wait_s: float = 10.0) -> dict[str, int]:
    """The counts once they equal `want` (statistics may land just after the answer), or as they are after wait_s."""
    deadline = time.monotonic() + wait_s
    while (got := executions(client, want)) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def quiet(client: grpcclient.InferenceServerClient, models: dict[str, int], still_s: float = 1.0) -> dict[str, int]:
    """The counts once they have not changed for ``still_s``: the statistics of an earlier test's last request can
    land after its answer, and must not be counted as this test's."""
    last, since = executions(client, models), time.monotonic()
    deadline = since + 15.0
    while time.monotonic() - since < still_s and time.monotonic() < deadline:
        time.sleep(0.1)
        now = executions(client, models)
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_steps_that_only_unrequested_outputs_need_do_not_run(clients: dict, videos: dict) -> None:
    """FACE_CROPS has a step of its own, skipped when nobody asks for it (alone it needs the classifier too: the
    crops are the deciding face's); the tracks' boxes alone skip cropping and classifying, FRAME_SIZE alone
    everything after decoding."""
    models = (
        "video_decode",
        "face_detector",
        "face_crop",
        "face_crop_images",
        "track_classifier",
        "temporal_classifier",
    )
    stats = clients["grpc"]
    expected = quiet(stats, dict.fromkeys(models, 0))
    for outputs, ran in (
        (GATEWAY_OUTPUTS, {"video_decode", "face_detector", "face_crop", "track_classifier", "temporal_classifier"}),
        (("FACE_CROPS",), {*models}),
        (("TRACK_BOXES", "TRACK_HAS_FACE", "UNANALYSED_FACES"), {"video_decode", "face_detector"}),
        (("FRAME_SIZE",), {"video_decode"}),
    ):
        ask(clients, "grpc", videos["face"], outputs, 4)
        expected = {m: n + (m in ran) for m, n in expected.items()}
        assert settled(stats, expected) == expected, outputs
