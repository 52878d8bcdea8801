"""The gateway's Triton client: the deepfake_detector ensemble over gRPC (tritonclient.grpc.aio).

Errors map to the gateway's hierarchy: INVALID_ARGUMENT -> UnsupportedVideo (422, the model's own message),
UNAVAILABLE and connection failures -> TritonUnavailable (503 + Retry-After), DEADLINE_EXCEEDED -> UpstreamTimeout
(504), anything else -> UpstreamFailure (502).
"""

from __future__ import annotations

import asyncio
import logging

import tritonclient.grpc
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from deepfake_core.constants import CLASSIFIER_MODEL
from deepfake_core.ensemble_contract import (
    ENSEMBLE,
    TRACK_MAPS_OUTPUT,
    DetectorResult,
    clean_message,
    ensemble_request,
)
from deepfake_core.served_identity import ServedIdentity
from gateway.core.errors import GatewayError, TritonUnavailable, UnsupportedVideo, UpstreamFailure, UpstreamTimeout

log = logging.getLogger("gateway.triton")

MAX_MESSAGE_BYTES = 2**31 - 1
# gRPC's reconnect backoff grows to 2 minutes by default; keep it short so a restarted Triton is found quickly.
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # Keepalive pings find a dead connection, but Triton's gRPC server (defaults of its --grpc-keepalive-* and
    # --grpc-http2-* flags) answers pings closer than 5 minutes with GOAWAY "too_many_pings", which drops the
    # connection and every call on it: ping every 6 minutes at most.
    ("grpc.keepalive_time_ms", 360_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
RETRY_AFTER_S = 5


def map_error(exc: InferenceServerException, timeout_s: float) -> GatewayError:
    """The gateway error for a tritonclient exception."""
    status = str(exc.status() or "")
    message = clean_message(exc.message())
    if "INVALID_ARG" in status:
        return UnsupportedVideo(message)
    if "DEADLINE_EXCEEDED" in status:
        return UpstreamTimeout(f"Triton did not answer within {timeout_s:g} s")
    if "UNAVAILABLE" in status or "CANCELLED" in status:
        return TritonUnavailable(f"Triton is unavailable: {message}", retry_after_s=RETRY_AFTER_S)
    return UpstreamFailure(f"Triton failed ({status or 'unknown status'}): {message}")


class TritonService:
    """One long-lived gRPC channel to Triton, shared by all requests."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(url=url, channel_args=CHANNEL_ARGS)

    async def ready(self, timeout_s: float = 2.0) -> bool:
        """True when the server and the ensemble answer ready."""
        try:
            server = await self._client.is_server_ready(client_timeout=timeout_s)
            return bool(server and await self._client.is_model_ready(ENSEMBLE, client_timeout=timeout_s))
        except (TimeoutError, InferenceServerException, OSError):
            return False

    async def served_identity(self, timeout_s: float = 5.0) -> ServedIdentity | None:
        """The classifier Triton serves, from its model config's ``served.*`` parameters (``get_model_config``);
        None when Triton cannot be asked or its config carries no identity (a repository not written by export)."""
        try:
            reply = await self._client.get_model_config(CLASSIFIER_MODEL, as_json=True, client_timeout=timeout_s)
        except (TimeoutError, InferenceServerException, OSError) as exc:
            log.debug("cannot read %s's config: %s", CLASSIFIER_MODEL, exc)
            return None
        parameters = reply.get("config", {}).get("parameters", {})
        return ServedIdentity.from_parameters(
            {k: str(v.get("string_value", "")) for k, v in parameters.items() if isinstance(v, dict)}
        )

    async def detect(self, video: bytes, num_frames: int, with_maps: bool) -> DetectorResult:
        """Analyse one video; TRACK_FEATURE_MAPS (every face's, for Grad-CAM) is requested only when ``with_maps``."""
        # Serialising a large video into the request copies it: done off the event loop.
        inputs, outputs = await asyncio.to_thread(_request, video, num_frames, with_maps)
        try:
            result = await self._client.infer(ENSEMBLE, inputs, outputs=outputs, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise map_error(exc, self.timeout_s) from exc
        except OSError as exc:
            raise TritonUnavailable(f"cannot reach Triton at {self.url}: {exc}", retry_after_s=RETRY_AFTER_S) from exc
        try:
            return DetectorResult.from_outputs(result.as_numpy)
        except (KeyError, IndexError, ValueError) as exc:
            raise UpstreamFailure(f"Triton's answer is incomplete: {exc}") from exc

    async def close(self) -> None:
        await self._client.close()


def _request(video: bytes, num_frames: int, with_maps: bool) -> tuple[list[InferInput], list[InferRequestedOutput]]:
    """The ensemble's inputs (VIDEO, NUM_FRAMES) and requested outputs."""
    return ensemble_request(tritonclient.grpc, video, num_frames, [TRACK_MAPS_OUTPUT] if with_maps else [])
