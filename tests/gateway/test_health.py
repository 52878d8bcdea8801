"""Health, info, metrics and the OpenAPI docs of a running gateway."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from deepfake_core.checkpoint import checkpoint_digest
from deepfake_core.paths import BUNDLED_CHECKPOINT
from tests.gateway.conftest import FAST, GatewayServer, VideoServer
from tests.gateway.inference.test_twin_follower import triton_identity


def test_health_reports_each_check(client: httpx.Client, gateway: GatewayServer) -> None:
    r = client.get("/api/v1/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert {k: v["ok"] for k, v in body["checks"].items()} == {
        "gateway": True,
        "triton": True,
        "storage": True,
        "model": True,  # the Grad-CAM twin is the checkpoint Triton serves
        "jobs": True,
    }
    model = body["checks"]["model"]
    assert model["served_sha256"] == model["grad_cam_sha256"] == checkpoint_digest(BUNDLED_CHECKPOINT)
    assert gateway.settings.triton_grpc_url in body["checks"]["triton"]["detail"]
    assert body["checks"]["storage"]["detail"].startswith("local")


def test_info_reports_model_defaults_and_limits(client: httpx.Client, gateway: GatewayServer) -> None:
    body = client.get("/api/v1/info").json()
    served = triton_identity(gateway.settings.triton_grpc_url)  # Triton's own word (its model config)
    assert body["model"]["name"] == "deepfake_detector"
    assert body["model"]["version"] == served.version == body["model"]["gradcam_version"]
    assert body["model"]["threshold"] == served.threshold and body["model"]["num_frames"] == 32
    assert body["model"]["precision"] == served.precision
    assert body["model"]["checkpoint_sha256"] == served.checkpoint_sha256 == body["model"]["gradcam_checkpoint_sha256"]
    # why that precision, as the export wrote it into the config (never guessed)
    assert body["model"]["precision_reason"] == served.precision_reason
    assert served.precision_reason is not None and served.precision_reason.startswith(f"{served.precision}: ")
    assert body["defaults"] == {"num_frames": 8, "heatmap": True, "output_max_side": 720}
    limits = body["limits"]
    assert limits["max_download_bytes"] == gateway.settings.max_download_bytes and limits["max_redirects"] == 3
    assert limits["max_num_frames"] == 128 and body["storage"] == "local"


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus exposition (None when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def test_metrics_count_requests_and_stages(client: httpx.Client, video_server: VideoServer) -> None:
    before = client.get("/metrics").text
    client.get("/api/v1/health")
    assert client.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), **FAST}).status_code == 200
    client.post("/api/v1/predict", json={"url": "file:///etc/passwd"})
    text = client.get("/metrics").text

    def grew(name: str, **labels: str) -> float:
        return (metric(text, name, **labels) or 0.0) - (metric(before, name, **labels) or 0.0)

    requests = "gateway_requests_total"
    assert grew(requests, route="/api/v1/health", method="GET", status="200") == 1
    assert grew(requests, route="/api/v1/predict", method="POST", status="200") == 1
    assert grew(requests, route="/api/v1/predict", method="POST", status="400") == 1
    assert grew("gateway_errors_total", type="url_refused") == 1
    for stage in ("download", "inference", "render", "upload"):
        assert grew("gateway_stage_duration_seconds_count", stage=stage) == 1
    assert grew("gateway_request_duration_seconds_count", route="/api/v1/predict") == 2
    assert metric(text, "gateway_in_flight_requests") == 1  # this /metrics request itself
    assert metric(text, "gateway_predictions_in_flight") == 0


def test_openapi_and_docs(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/api/v1/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"200", "400", "413", "422", "424", "503", "504"} <= set(predict["responses"])
    assert {"/api/v1/predict/upload", "/api/v1/health", "/api/v1/info", "/media/{public_id}.mp4"} <= set(spec["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
