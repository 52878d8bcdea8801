"""Session fixtures: the real local Triton server on free loopback ports, and generated media."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepfake_core.checkpoint import checkpoint_digest, load_or_untrained
from deepfake_core.classifier import TemporalClassifier
from deepfake_core.paths import BUNDLED_CHECKPOINT
from triton_runtime.process import TritonProcess, TritonStartError
from triton_runtime.server import DEFAULT_MODEL_REPOSITORY, ServerOptions

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "test-artifacts"
ONNX_MODELS = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", "temporal_classifier")


@pytest.fixture(scope="session")
def model_repository() -> Path:
    """The project's model repository, with its ONNX files exported (`make test` runs `make export` first)."""
    missing = [m for m in ONNX_MODELS if not (DEFAULT_MODEL_REPOSITORY / m / "1" / "model.onnx").exists()]
    if missing:
        pytest.fail(f"ONNX models missing ({', '.join(missing)}): run `make export` (make test does)")
    return DEFAULT_MODEL_REPOSITORY


@pytest.fixture(scope="session")
def served_twin(model_repository: Path) -> TemporalClassifier:
    """The PyTorch twin of the classifier Triton serves: the checkpoint `make export` exported (its digest is in
    temporal_classifier/1/metadata.json), or the seeded untrained model when none was."""
    meta = json.loads((model_repository / "temporal_classifier" / "1" / "metadata.json").read_text())
    digest = meta.get("checkpoint_sha256")
    if digest is None:
        return load_or_untrained(None)[0]
    if not BUNDLED_CHECKPOINT.exists() or checkpoint_digest(BUNDLED_CHECKPOINT) != digest:
        pytest.fail("the served classifier is not weights/classifier.pt: run `make export` (make test does)")
    return load_or_untrained(BUNDLED_CHECKPOINT)[0]


@pytest.fixture(scope="session")
def triton(model_repository: Path) -> Iterator[TritonProcess]:
    """A real tritonserver serving the project's model repository; its log goes to test-artifacts/."""
    options = ServerOptions(model_repository=model_repository)
    server = TritonProcess.on_free_ports(ARTIFACTS / "triton.log", options)
    try:
        server.start()
    except TritonStartError as exc:
        pytest.fail(f"local Triton did not start: {exc}")
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure in a test that used a server, print the end of that server's log."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, TritonProcess):
                report.sections.append(("tritonserver log (tail)", value.log_tail()))
