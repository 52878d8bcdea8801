"""Send a video to the deepfake_detector ensemble over gRPC or HTTP; ask only for the outputs you use.

The minimal call, one output (any non-empty subset of the ensemble's outputs works the same way)::

    with DetectorClient("127.0.0.1:8001", "grpc") as client:
        prob_fake = client.infer(video_bytes, ["PROB_FAKE"])["PROB_FAKE"][0]

`detect` returns a DetectorResult (the verdict outputs, plus FACE_CROPS / FEATURE_MAPS when asked for).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from deepfake_core.ensemble_contract import (
    CROPS_OUTPUT,
    ENSEMBLE,
    MAPS_OUTPUT,
    VERDICT_OUTPUTS,
    DetectorResult,
    clean_message,
    ensemble_inputs,
    requested_outputs,
)

Protocol = Literal["grpc", "http"]


class ServerUnavailableError(RuntimeError):
    """Triton cannot be reached or is not ready."""


class VideoRejectedError(ValueError):
    """Triton refused the video (INVALID_ARG): the message says why."""


def _is_rejection(exc: InferenceServerException) -> bool:
    status = str(exc.status() or "")
    return "INVALID_ARG" in status or status == "400"


class DetectorClient:
    """A synchronous client of the ensemble; `protocol` picks tritonclient.grpc or tritonclient.http."""

    def __init__(self, url: str = "127.0.0.1:8001", protocol: Protocol = "grpc", timeout_s: float = 120.0):
        self.protocol = protocol
        self.timeout_s = timeout_s
        module: Any = grpcclient if protocol == "grpc" else httpclient
        self._module = module
        kwargs = {} if protocol == "grpc" else {"connection_timeout": timeout_s, "network_timeout": timeout_s}
        self._client = module.InferenceServerClient(url=url, **kwargs)

    def ready(self) -> bool:
        """True when the server and the ensemble are ready."""
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(ENSEMBLE))
        except (InferenceServerException, OSError):
            return False

    def infer(self, video: bytes, outputs: Sequence[str], num_frames: int | None = None) -> dict[str, np.ndarray]:
        """Analyse one video and return exactly the requested `outputs` (batch dimension removed). Raises
        VideoRejectedError, ServerUnavailableError, or ValueError for an empty or unknown output name."""
        inputs = ensemble_inputs(self._module, video, num_frames)
        wanted = requested_outputs(self._module, outputs)
        try:
            if self.protocol == "grpc":
                result = self._client.infer(ENSEMBLE, inputs, outputs=wanted, client_timeout=self.timeout_s)
            else:
                result = self._client.infer(ENSEMBLE, inputs, outputs=wanted)
        except InferenceServerException as exc:
            if _is_rejection(exc):
                raise VideoRejectedError(clean_message(exc.message())) from exc
            raise ServerUnavailableError(f"Triton failed: {exc.message() or exc}") from exc
        except OSError as exc:  # HTTP connection refused / reset
            raise ServerUnavailableError(f"cannot reach Triton: {exc}") from exc
        answer = {}
        for name in outputs:
            value = result.as_numpy(name)
            if value is None:
                raise ServerUnavailableError(f"Triton's answer lacks {name}")
            answer[name] = value[0]
        return answer

    def detect(
        self,
        video: bytes,
        num_frames: int | None = None,
        with_crops: bool = False,
        with_maps: bool = False,
        outputs: Sequence[str] = VERDICT_OUTPUTS,
    ) -> DetectorResult:
        """Analyse one video: `outputs` (at least JSON_OUTPUTS; default all verdict outputs), plus the face crops /
        feature maps when asked for. Raises VideoRejectedError or ServerUnavailableError."""
        extras = [name for name, wanted in ((CROPS_OUTPUT, with_crops), (MAPS_OUTPUT, with_maps)) if wanted]
        answer = self.infer(video, [*outputs, *extras], num_frames)
        return DetectorResult.from_outputs(lambda name: None if name not in answer else answer[name][None])

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DetectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
