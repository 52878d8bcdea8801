"""Fixtures of the core tests: the MTCNN nets on ONNX Runtime (the very ONNX files Triton serves)."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from deepfake_core.mtcnn_cascade import MtcnnNets
from triton_runtime.server import DEFAULT_MODEL_REPOSITORY


@pytest.fixture(scope="session")
def nets() -> MtcnnNets:
    def session(name: str) -> ort.InferenceSession:
        path = DEFAULT_MODEL_REPOSITORY / name / "1" / "model.onnx"
        if not path.exists():
            pytest.fail(f"{path} missing: run `make export`")
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    sessions = {n: session(f"mtcnn_{n}") for n in ("pnet", "rnet", "onet")}

    def call(name: str):  # type: ignore[no-untyped-def]
        return lambda x: sessions[name].run(None, {"image": x})

    return MtcnnNets(pnet=call("pnet"), rnet=call("rnet"), onet=call("onet"))
