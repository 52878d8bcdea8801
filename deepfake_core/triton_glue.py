"""Glue shared by the Triton Python models (imported only inside Triton's Python backend stub)."""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


def model_parameters(config: dict[str, Any]) -> dict[str, str]:
    """The config's `parameters { key: ... value { string_value: ... } }` as a plain dict."""
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def invalid_argument(message: str) -> Any:
    """A response carrying a per-request INVALID_ARG error (the rest of the batch is unaffected)."""
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


def internal_error(message: str) -> Any:
    """A response carrying a per-request INTERNAL error."""
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL))


def input_array(request: Any, name: str) -> np.ndarray | None:
    """The named input as a NumPy array, or None when an optional input was not sent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def response(outputs: dict[str, np.ndarray]) -> Any:
    """A response with the given output tensors."""
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in outputs.items()]
    )


def bls_call(model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    """Synchronous BLS call of another model in this server; raises TritonModelException on error."""
    request = pb_utils.InferenceRequest(
        model_name=model,
        requested_output_names=outputs,
        inputs=[pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in inputs.items()],
    )
    reply = request.exec()
    if reply.has_error():
        raise pb_utils.TritonModelException(f"{model}: {reply.error().message()}")
    return [pb_utils.get_output_tensor_by_name(reply, name).as_numpy() for name in outputs]
