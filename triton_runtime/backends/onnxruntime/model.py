"""A Python-based Triton backend named `onnxruntime`: runs `<model>/<version>/model.onnx` with ONNX Runtime (CPU).

The nvidia-pytriton wheel has no native ONNX Runtime backend. Placed as `<backend-dir>/onnxruntime/model.py`, this
file makes Triton load configs with `platform: "onnxruntime_onnx"` through the Python backend, so the model
repository is the same here and in the NGC image (where the native backend takes it).

It honours the config's inputs and outputs (names, data types, reshape-free dims), `max_batch_size`, and the native
backend's `intra_op_thread_count` / `inter_op_thread_count` parameters; parameters named `session.*` are handed to
ONNX Runtime as session config entries (e.g. `session.intra_op.allow_spinning`). Requests of the same shape that
the dynamic batcher hands over together run as one ONNX Runtime call.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _param(config: dict[str, Any], key: str) -> str | None:
    value = config.get("parameters", {}).get(key)
    return None if value is None else value.get("string_value")


class TritonPythonModel:
    """Serve one ONNX file with ONNX Runtime."""

    def initialize(self, args: dict[str, str]) -> None:
        self.config = json.loads(args["model_config"])
        filename = self.config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(f"{path} not found: run `make export` to build the ONNX files")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_param(self.config, "intra_op_thread_count") or 0)
        options.inter_op_num_threads = int(_param(self.config, "inter_op_thread_count") or 0)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        for key, value in self.config.get("parameters", {}).items():
            if key.startswith("session."):
                options.add_session_config_entry(key, value.get("string_value", ""))
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.batching = int(self.config.get("max_batch_size", 0)) > 0
        self.inputs = [
            (i["name"], pb_utils.triton_string_to_numpy(i["data_type"]), bool(i.get("optional", False)))
            for i in self.config["input"]
        ]
        self.outputs = [o["name"] for o in self.config["output"]]
        onnx_inputs = {i.name for i in self.session.get_inputs()}
        onnx_outputs = {o.name for o in self.session.get_outputs()}
        missing = {n for n, _, _ in self.inputs} - onnx_inputs | set(self.outputs) - onnx_outputs
        if missing:
            raise pb_utils.TritonModelException(f"config tensors not in {filename}: {sorted(missing)}")

    def _read(self, request: Any) -> dict[str, np.ndarray]:
        feeds = {}
        for name, dtype, optional in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                if optional:
                    continue
                raise ValueError(f"missing input {name}")
            feeds[name] = np.ascontiguousarray(tensor.as_numpy(), dtype=dtype)
        return feeds

    def execute(self, requests: list[Any]) -> list[Any]:
        """Group same-shape requests, run each group once, split the outputs back per request."""
        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, dict[str, np.ndarray]]]] = defaultdict(list)
        for i, request in enumerate(requests):
            try:
                feeds = self._read(request)
            except ValueError as exc:
                responses[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                )
                continue
            key = tuple((n, a.shape[1:] if self.batching else a.shape) for n, a in sorted(feeds.items()))
            groups[key if self.batching else (i,)].append((i, feeds))
        for members in groups.values():
            self._run_group(members, responses)
        return responses

    def _run_group(self, members: list[tuple[int, dict[str, np.ndarray]]], responses: list[Any]) -> None:
        names = list(members[0][1])
        feeds = members[0][1] if len(members) == 1 else {n: np.concatenate([f[n] for _, f in members]) for n in names}
        try:
            results = self.session.run(self.outputs, feeds)
        except Exception as exc:  # noqa: BLE001 - ORT raises several types; all are the request's fault here
            for i, _ in members:
                responses[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"onnxruntime: {exc}", pb_utils.TritonError.INVALID_ARG)
                )
            return
        if len(members) == 1:
            responses[members[0][0]] = self._response(results)
            return
        bounds = np.cumsum([f[names[0]].shape[0] for _, f in members])[:-1]
        split = [np.split(r, bounds) for r in results]
        for k, (i, _) in enumerate(members):
            responses[i] = self._response([parts[k] for parts in split])

    def _response(self, results: list[np.ndarray]) -> Any:
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(value))
                for name, value in zip(self.outputs, results, strict=True)
            ]
        )

    def finalize(self) -> None:
        self.session = None
