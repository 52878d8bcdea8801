"""Triton is the one source of the served classifier's identity: the gateway reads it from temporal_classifier's
model config (``get_model_config``), compares the digest with its Grad-CAM twin's, reports a mismatch in
``/api/v1/health`` (and skips the heatmap), and reloads the twin when the served checkpoint is available here.

Two real checkpoints (the bundled weights and a small one built here), the real Triton, real gateways.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import tritonclient.grpc as grpcclient

from deepfake_core.checkpoint import checkpoint_digest, save_checkpoint
from deepfake_core.classifier import untrained_classifier
from deepfake_core.constants import CLASSIFIER_MODEL
from deepfake_core.paths import BUNDLED_CHECKPOINT
from deepfake_core.served_identity import ServedIdentity
from export.onnx_export import export_models
from tests.gateway.conftest import GatewayFactory, VideoServer
from triton_runtime.process import TritonProcess
from triton_runtime.server import ServerOptions

SMALL = {"width_mult": 0.25, "depth_mult": 0.25}
BUNDLED = checkpoint_digest(BUNDLED_CHECKPOINT)


def triton_identity(grpc_url: str) -> ServedIdentity:
    """What Triton itself reports (tritonclient, as the gateway asks it)."""
    with grpcclient.InferenceServerClient(grpc_url) as client:
        config = client.get_model_config(CLASSIFIER_MODEL, as_json=True)["config"]
    identity = ServedIdentity.from_parameters({k: v.get("string_value", "") for k, v in config["parameters"].items()})
    assert identity is not None
    return identity


def small_checkpoint(path: Path, version: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, untrained_classifier(SMALL), {"version": version})


def wait_until(client: httpx.Client, ok: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0) -> dict[str, Any]:
    """Health and info, polled until ``ok`` holds (or the time is up: the caller's asserts then show why)."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = {"health": client.get("/api/v1/health").json(), "info": client.get("/api/v1/info").json()["model"]}
        if ok(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def test_health_reports_a_twin_that_is_not_the_served_checkpoint(
    triton: TritonProcess, make_gateway: GatewayFactory, video_server: VideoServer, tmp_path: Path
) -> None:
    served = triton_identity(triton.grpc_url)
    assert served.checkpoint_sha256 == BUNDLED  # `make export` served the bundled weights
    small = small_checkpoint(tmp_path / "small.pt", "small-twin")

    stuck = make_gateway(checkpoint=small, twin_reload_interval_s=0)  # never follows: the mismatch stays
    with stuck.client() as client:
        r = client.get("/api/v1/health")
        assert r.status_code == 200, r.text  # verdicts are still served
        body = r.json()
        assert body["status"] == "degraded"
        model = body["checks"]["model"]
        assert model["ok"] is False
        assert model["served_sha256"] == BUNDLED and model["grad_cam_sha256"] == checkpoint_digest(small)
        assert BUNDLED in model["detail"] and checkpoint_digest(small) in model["detail"]
        assert all(body["checks"][k]["ok"] for k in ("gateway", "triton", "storage"))
        info = client.get("/api/v1/info").json()["model"]
        assert info["version"] == served.version and info["gradcam_version"] == "small-twin"
        assert info["checkpoint_sha256"] == BUNDLED and info["precision"] == served.precision
        r = client.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), "num_frames": 4})
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["heatmap"] is False  # no heatmap from another model
        assert [e["type"] for e in result["errors"]] == ["twin_mismatch"]
        assert result["model"]["version"] == served.version

    # The served checkpoint is here (the path the export recorded): a following gateway loads it at start.
    following = make_gateway(checkpoint=small, twin_reload_interval_s=0.2)
    with following.client() as client:
        body = client.get("/api/v1/health").json()
        assert body["status"] == "ok", body
        assert body["checks"]["model"]["ok"] is True
        assert body["checks"]["model"]["served_sha256"] == body["checks"]["model"]["grad_cam_sha256"] == BUNDLED
        info = client.get("/api/v1/info").json()["model"]
        assert info["gradcam_version"] == info["version"] == served.version
        assert info["gradcam_checkpoint_sha256"] == BUNDLED


def test_twin_follows_a_reexport_and_recovers_when_the_checkpoint_appears(
    model_repository: Path, make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repository, repo)
    options = ServerOptions(model_repository=repo, model_control_mode="poll", repository_poll_secs=1)
    with TritonProcess.on_free_ports(tmp_path / "triton.log", options) as server:
        gateway = make_gateway(triton_grpc_url=server.grpc_url, twin_reload_interval_s=0.2)
        services = gateway.app.state.services
        with gateway.client() as client:
            assert client.get("/api/v1/health").json()["status"] == "ok"

            # 1. a re-export whose checkpoint the gateway can read: the twin follows
            first = small_checkpoint(tmp_path / "a" / "small.pt", "small-a")
            export_models(repo, first, only=["temporal_classifier"], log=lambda _: None)
            seen = wait_until(client, lambda s: s["info"]["gradcam_version"] == "small-a")
            assert seen["info"]["version"] == seen["info"]["gradcam_version"] == "small-a", server.log_tail()
            assert seen["health"]["status"] == "ok" and seen["health"]["checks"]["model"]["ok"] is True
            assert services.gradcam.model.frame_encoder.out_features == 320  # the small encoder's width
            assert triton_identity(server.grpc_url).checkpoint_sha256 == checkpoint_digest(first)
            engine = services.gradcam

            # 2. a re-export whose checkpoint is gone before Triton serves it: mismatch reported, twin kept
            second = small_checkpoint(tmp_path / "b" / "small.pt", "small-b")
            digest = checkpoint_digest(second)
            export_models(repo, second, only=["temporal_classifier"], log=lambda _: None)
            hidden = second.rename(second.with_name("elsewhere.pt"))
            seen = wait_until(client, lambda s: s["health"]["status"] == "degraded")
            model = seen["health"]["checks"]["model"]
            assert seen["health"]["status"] == "degraded", seen
            assert model["served_sha256"] == digest and model["grad_cam_sha256"] == checkpoint_digest(first)
            assert seen["info"]["version"] == "small-b" and seen["info"]["gradcam_version"] == "small-a"
            assert services.gradcam is engine

            # 3. the checkpoint appears where the export recorded it: the twin loads it, health recovers
            hidden.rename(second)
            seen = wait_until(client, lambda s: s["health"]["status"] == "ok")
            assert seen["health"]["status"] == "ok", seen
            assert seen["health"]["checks"]["model"]["grad_cam_sha256"] == digest
            assert seen["info"]["gradcam_version"] == "small-b"
            assert services.gradcam is not engine
