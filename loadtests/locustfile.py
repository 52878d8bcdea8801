"""Locust users of the load test (``python -m loadtests`` starts the stack and runs Locust on this file).

- ``GatewayUser``: ``POST /api/v1/predict`` with the URL of a clip on the loopback media server (``--media-url``),
  drawn from the clip mix (``--clip-mix``); Grad-CAM heatmaps on or off (``--heatmap``).
- ``TritonUser``: the ``deepfake_detector`` ensemble over gRPC with tritonclient (``--triton-grpc``), the clip's bytes
  read from ``--clip-dir``; every call is reported to Locust's request event (type ``grpc``), so both users share
  one statistics table.

An answer counts as a failure unless it is a complete verdict that fits the clip: a face clip must not come back
NO_FACE, a clip without a face must, and the gateway's answer must carry no stage errors, an overlay video, and
heatmaps exactly when they were asked for and the clip has a face.
``--pacing SECONDS`` starts each user's requests that many seconds apart (steady rate; 0: back to back).
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any

import gevent
import grpc.experimental.gevent as grpc_gevent
import tritonclient.grpc as grpcclient
from locust import HttpUser, User, events, stats, task
from locust.argument_parser import LocustArgumentParser
from locust.user.wait_time import constant_pacing

from deepfake_core.ensemble_contract import ENSEMBLE, DetectorResult, ensemble_request
from loadtests.clips import DEFAULT_CACHE, DEFAULT_MIX, Clip, MixEntry, parse_mix, pick

# Locust runs users as greenlets: without this a gRPC call blocks every other user until it returns.
grpc_gevent.init_gevent()

PREDICT = "/api/v1/predict"
REQUEST_TIMEOUT_S = 600.0


@events.init_command_line_parser.add_listener
def _add_arguments(parser: LocustArgumentParser) -> None:
    group = parser.add_argument_group("deepfake load test")
    group.add_argument("--media-url", default="http://127.0.0.1:8080", help="base URL serving the clips (loopback)")
    group.add_argument("--clip-dir", default=str(DEFAULT_CACHE), help="folder of the generated clips")
    group.add_argument("--clip-mix", default=DEFAULT_MIX, help="name:weight,... of loadtests.clips.CATALOGUE")
    group.add_argument("--heatmap", choices=("on", "off"), default="on", help="Grad-CAM heatmaps in the gateway")
    group.add_argument("--num-frames", type=int, default=0, help="frames analysed (0: the service's default)")
    group.add_argument("--triton-grpc", default="127.0.0.1:8001", help="Triton's gRPC address for TritonUser")
    group.add_argument("--pacing", type=float, default=0.0, help="seconds between a user's request starts")


@events.quit.add_listener
def _flush_csv(**_kwargs: Any) -> None:
    # Locust rewrites its CSV files every CSV_STATS_INTERVAL_SEC in a greenlet and closes them right after this
    # event: give that greenlet one more turn so the requests that ended during the stop timeout are in them.
    gevent.sleep(stats.CSV_STATS_INTERVAL_SEC + 0.5)


def _options(user: User) -> Any:
    return user.environment.parsed_options


@cache
def _mix(spec: str) -> list[MixEntry]:
    return parse_mix(spec)


@cache
def _clip_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def verdict_problem(clip: Clip, predicted_class: str) -> str | None:
    """Why a verdict does not fit the clip, or None when it does."""
    if clip.face and predicted_class == "NO_FACE":
        return f"{clip.name}: a face clip came back NO_FACE"
    if not clip.face and predicted_class != "NO_FACE":
        return f"{clip.name}: a clip without a face came back {predicted_class}"
    return None


def _paced_wait(user: User) -> float:
    pacing = float(_options(user).pacing)
    return constant_pacing(pacing)(user) if pacing > 0 else 0.0


class GatewayUser(HttpUser):
    """Posts clip URLs to the gateway's predict endpoint (``--host``: the gateway's base URL)."""

    wait_time = _paced_wait

    @task
    def predict(self) -> None:
        opts = _options(self)
        clip = pick(_mix(opts.clip_mix))
        heatmap = opts.heatmap == "on"
        body: dict[str, Any] = {"url": f"{opts.media_url}/{clip.file}", "heatmap": heatmap}
        if opts.num_frames > 0:
            body["num_frames"] = opts.num_frames
        with self.client.post(PREDICT, json=body, name=PREDICT, catch_response=True, timeout=REQUEST_TIMEOUT_S) as resp:
            if resp.status_code != 200:
                resp.failure(f"{clip.name}: HTTP {resp.status_code}: {resp.text[:300]}")
                return
            answer = resp.json()
            problem = verdict_problem(clip, answer.get("predicted_class", "?"))
            if problem is None and answer.get("errors"):
                problem = f"{clip.name}: stage errors {answer['errors']}"
            # The overlay carries heatmaps when asked for and a face was found (none can be drawn without one).
            expected_heatmap = heatmap and clip.face
            if problem is None and answer.get("heatmap") != expected_heatmap:
                problem = f"{clip.name}: expected heatmap={expected_heatmap}, got {answer.get('heatmap')}"
            if problem is None and not answer.get("output_url"):
                problem = f"{clip.name}: no overlay video"
            if problem:
                resp.failure(problem)
            else:
                resp.success()


class TritonUser(User):
    """Calls the deepfake_detector ensemble directly over gRPC and reports each call to Locust."""

    wait_time = _paced_wait

    def on_start(self) -> None:
        self.triton = grpcclient.InferenceServerClient(_options(self).triton_grpc)

    def on_stop(self) -> None:
        self.triton.close()

    @task
    def detect(self) -> None:
        opts = _options(self)
        clip = pick(_mix(opts.clip_mix))
        video = _clip_bytes(str(Path(opts.clip_dir) / clip.file))
        inputs, outputs = ensemble_request(grpcclient, video, opts.num_frames or None)
        length = 0
        exception: Exception | None = None
        start = time.perf_counter()
        try:
            result = self.triton.infer(ENSEMBLE, inputs, outputs=outputs, client_timeout=REQUEST_TIMEOUT_S)
            length = result.get_response().ByteSize()
            problem = verdict_problem(clip, DetectorResult.from_outputs(result.as_numpy).predicted_class())
            if problem:
                exception = AssertionError(problem)
        except Exception as exc:  # any error of the call is the request's failure, reported to Locust
            exception = exc
        self.environment.events.request.fire(
            request_type="grpc",
            name=ENSEMBLE,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=exception,
            context={"clip": clip.name},
        )
