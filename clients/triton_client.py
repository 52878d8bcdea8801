"""Send a video to the deepfake_detector ensemble over gRPC or HTTP and get a DetectorResult."""

from __future__ import annotations

from typing import Any, Literal

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from deepfake_core.ensemble_contract import (
    CROPS_OUTPUT,
    ENSEMBLE,
    MAPS_OUTPUT,
    DetectorResult,
    clean_message,
    ensemble_request,
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

    def detect(
        self, video: bytes, num_frames: int | None = None, with_crops: bool = False, with_maps: bool = False
    ) -> DetectorResult:
        """Analyse one video (optionally with the face crops / feature maps). Raises VideoRejectedError or
        ServerUnavailableError."""
        extras = [name for name, wanted in ((CROPS_OUTPUT, with_crops), (MAPS_OUTPUT, with_maps)) if wanted]
        inputs, outputs = ensemble_request(self._module, video, num_frames, extras)
        try:
            if self.protocol == "grpc":
                result = self._client.infer(ENSEMBLE, inputs, outputs=outputs, client_timeout=self.timeout_s)
            else:
                result = self._client.infer(ENSEMBLE, inputs, outputs=outputs)
        except InferenceServerException as exc:
            if _is_rejection(exc):
                raise VideoRejectedError(clean_message(exc.message())) from exc
            raise ServerUnavailableError(f"Triton failed: {exc.message() or exc}") from exc
        except OSError as exc:  # HTTP connection refused / reset
            raise ServerUnavailableError(f"cannot reach Triton: {exc}") from exc
        return DetectorResult.from_outputs(result.as_numpy)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DetectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
