"""The gateway's Grad-CAM twin and reported model follow a re-export of the served classifier."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fastapi.testclient import TestClient

from deepfake_core.checkpoint import checkpoint_digest, save_checkpoint
from deepfake_core.classifier import untrained_classifier
from gateway.core.settings import Settings
from gateway.main import create_app
from triton_runtime.process import free_port


def write_metadata(
    path: Path, checkpoint: Path | None, version: str, threshold: float, precision: tuple[str, str] | None = None
) -> None:
    """What the export writes (``precision``: (precision, precision_reason), left out when None)."""
    meta = {
        "version": version,
        "threshold": threshold,
        "num_frames": 32,
        "checkpoint_sha256": checkpoint_digest(checkpoint) if checkpoint else None,
        "checkpoint_path": str(checkpoint) if checkpoint else None,
    }
    if precision is not None:
        meta.update(precision=precision[0], precision_reason=precision[1])
    path.write_text(json.dumps(meta))


FP32_ASKED = ("fp32", "fp32: asked for (--precision fp32, quantisation off)")
INT8_PASSED = ("int8", "int8: passed the INT8 gate (|delta PROB_FAKE| 0.004 <= 0.02 on 8 generated clips)")


def wait_for(client: TestClient, version: str, timeout_s: float = 30.0, key: str = "version") -> dict:
    """/api/v1/info's model once its ``key`` reads ``version`` (or the last one seen at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        model = client.get("/api/v1/info").json()["model"]
        if model[key] == version or time.monotonic() > deadline:
            return model
        time.sleep(0.2)


def test_twin_follows_a_reexport_and_ignores_an_unknown_checkpoint(tmp_path: Path) -> None:
    metadata = tmp_path / "metadata.json"
    write_metadata(metadata, None, "untrained", 0.5)
    settings = Settings(
        data_dir=tmp_path / "data",
        triton_grpc_url=f"127.0.0.1:{free_port()}",  # not needed here
        checkpoint=None,
        model_metadata=metadata,
        twin_reload_interval_s=0.2,
        auth="open",
    )
    small = save_checkpoint(
        tmp_path / "small.pt", untrained_classifier({"width_mult": 0.25, "depth_mult": 0.25}), {"version": "v2"}
    )
    with TestClient(create_app(settings)) as client:
        first = client.get("/api/v1/info").json()["model"]
        assert first["gradcam_version"] == "untrained"
        assert first["precision"] is None and first["precision_reason"] is None  # the metadata says nothing
        write_metadata(metadata, small, "v2", 0.42, FP32_ASKED)
        model = wait_for(client, "v2")
        assert model["version"] == "v2" and model["gradcam_version"] == "v2" and model["threshold"] == 0.42
        assert (model["precision"], model["precision_reason"]) == FP32_ASKED
        engine = client.app.state.services.gradcam  # type: ignore[attr-defined]
        assert engine is client.app.state.services.pipeline.gradcam  # type: ignore[attr-defined]
        assert engine.model.frame_encoder.out_features == 320  # the small encoder's width

        missing = tmp_path / "gone.pt"
        write_metadata(metadata, small, "v3", 0.42)
        data = json.loads(metadata.read_text())
        data.update(checkpoint_path=str(missing), checkpoint_sha256="0" * 64)
        metadata.write_text(json.dumps(data))
        time.sleep(1.0)
        assert client.app.state.services.pipeline.gradcam is engine  # type: ignore[attr-defined]


def test_info_follows_a_reexport_of_the_same_checkpoint_at_another_precision(tmp_path: Path) -> None:
    """Same checkpoint, INT8 now served: /api/v1/info says so, with the export's reason; the twin is kept."""
    metadata = tmp_path / "metadata.json"
    write_metadata(metadata, None, "untrained", 0.5, FP32_ASKED)
    settings = Settings(
        data_dir=tmp_path / "data",
        triton_grpc_url=f"127.0.0.1:{free_port()}",  # not needed here
        checkpoint=None,
        model_metadata=metadata,
        twin_reload_interval_s=0.2,
        auth="open",
    )
    with TestClient(create_app(settings)) as client:
        model = client.get("/api/v1/info").json()["model"]
        assert (model["precision"], model["precision_reason"]) == FP32_ASKED
        engine = client.app.state.services.pipeline.gradcam  # type: ignore[attr-defined]
        write_metadata(metadata, None, "untrained", 0.5, INT8_PASSED)
        model = wait_for(client, "int8", key="precision")
        assert (model["precision"], model["precision_reason"]) == INT8_PASSED
        assert model["version"] == "untrained" and model["threshold"] == 0.5
        assert client.app.state.services.pipeline.gradcam is engine  # type: ignore[attr-defined]
