"""Every error of the API, through real HTTP; after each bad request the gateway still serves a good one."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.gateway.conftest import (
    FAST,
    GatewayFactory,
    VideoServer,
    assert_error,
    assert_serves,
    holding_a_slot,
    tmp_files,
)
from triton_runtime.process import TritonProcess, free_port
from triton_runtime.server import ServerOptions

BAD_BODIES: list[tuple[str, Any]] = [
    ("missing url", {"num_frames": 8}),
    ("url not a string", {"url": 42}),
    ("empty url", {"url": ""}),
    ("num_frames zero", {"url": "http://127.0.0.1/x.mp4", "num_frames": 0}),
    ("num_frames too many", {"url": "http://127.0.0.1/x.mp4", "num_frames": 1000}),
    ("num_frames not a number", {"url": "http://127.0.0.1/x.mp4", "num_frames": "many"}),
    ("heatmap not a bool", {"url": "http://127.0.0.1/x.mp4", "heatmap": "maybe"}),
    ("unknown field", {"url": "http://127.0.0.1/x.mp4", "frames": 8}),
    ("a list", [1, 2]),
]


@pytest.mark.parametrize(("name", "payload"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_invalid_request_is_422(client: httpx.Client, video_server: VideoServer, name: str, payload: Any) -> None:
    body = assert_error(client.post("/api/v1/predict", json=payload), 422, "invalid_request")
    assert body["error"]["details"], body
    assert_serves(client, video_server)


@pytest.mark.parametrize(
    ("content", "ctype"),
    [(b"{not json", "application/json"), (b"", "application/json"), (b"url=x", "application/x-www-form-urlencoded")],
)
def test_malformed_body_is_422(client: httpx.Client, video_server: VideoServer, content: bytes, ctype: str) -> None:
    assert_error(
        client.post("/api/v1/predict", content=content, headers={"content-type": ctype}), 422, "invalid_request"
    )
    assert_serves(client, video_server)


def test_bad_upload_requests_are_422(client: httpx.Client, video_server: VideoServer) -> None:
    data = (video_server.root / "face.mp4").read_bytes()
    no_file = client.post("/api/v1/predict/upload", files={"other": ("x.mp4", data, "video/mp4")})
    assert "'file'" in assert_error(no_file, 422, "invalid_request")["error"]["message"]
    bad_option = client.post(
        "/api/v1/predict/upload", files={"file": ("x.mp4", data, "video/mp4")}, data={"num_frames": "0"}
    )
    assert "num_frames" in assert_error(bad_option, 422, "invalid_request")["error"]["message"]
    not_multipart = client.post("/api/v1/predict/upload", content=data, headers={"content-type": "video/mp4"})
    assert_error(not_multipart, 422, "invalid_request")
    assert_serves(client, video_server)


def test_loopback_is_refused_without_the_allowlist(make_gateway: GatewayFactory, video_server: VideoServer) -> None:
    strict = make_gateway(allowed_hosts=[])
    with strict.client() as c:
        for host in ("127.0.0.1", "localhost"):
            count = len(video_server.seen)
            r = c.post("/api/v1/predict", json={"url": f"http://{host}:{video_server.port}/face.mp4", **FAST})
            assert "non-public" in assert_error(r, 400, "url_refused")["error"]["message"]
            assert len(video_server.seen) == count  # refused before any connection
        upload = c.post(
            "/api/v1/predict/upload", files={"file": ("f.mp4", (video_server.root / "face.mp4").read_bytes())}
        )
        assert upload.status_code == 200, upload.text  # uploads are unaffected


@pytest.mark.parametrize("status", [404, 500, 403])
def test_remote_errors_are_424_with_the_remote_status(
    client: httpx.Client, video_server: VideoServer, status: int
) -> None:
    body = assert_error(
        client.post("/api/v1/predict", json={"url": video_server.url(f"status/{status}")}), 424, "download_failed"
    )
    assert body["error"]["remote_status"] == status and str(status) in body["error"]["message"]
    assert_serves(client, video_server)


def test_unreachable_host_and_redirect_loops_are_424(client: httpx.Client, video_server: VideoServer) -> None:
    dead = free_port()
    assert_error(client.post("/api/v1/predict", json={"url": f"http://127.0.0.1:{dead}/v.mp4"}), 424, "download_failed")
    r = client.post("/api/v1/predict", json={"url": video_server.url("hops/5/face.mp4")})
    assert "redirects" in assert_error(r, 424, "download_failed")["error"]["message"]
    assert_serves(client, video_server)


def test_too_large_is_413(make_gateway: GatewayFactory, video_server: VideoServer) -> None:
    data = (video_server.root / "face.mp4").read_bytes()
    smaller = (video_server.root / "faceless.mp4").read_bytes()
    assert len(smaller) < len(data) - 1
    small = make_gateway(max_download_bytes=len(data) - 1, max_upload_bytes=len(data) - 1)
    with small.client() as c:
        for path in ("face.mp4", "chunked/face.mp4", "lying/face.mp4"):  # Content-Length, counted, lying header
            r = c.post("/api/v1/predict", json={"url": video_server.url(path), **FAST})
            assert str(len(data) - 1) in assert_error(r, 413, "too_large")["error"]["message"]
        upload = c.post("/api/v1/predict/upload", files={"file": ("face.mp4", data, "video/mp4")})
        assert_error(upload, 413, "too_large")
        # Under the limit: accepted, by URL and by upload.
        assert c.post("/api/v1/predict", json={"url": video_server.url("faceless.mp4"), **FAST}).status_code == 200
        ok = c.post("/api/v1/predict/upload", files={"file": ("f.mp4", smaller)}, data={"heatmap": "false"})
        assert ok.status_code == 200, ok.text
    assert tmp_files(small) == []


def test_triton_unavailable_is_503_with_retry_after(make_gateway: GatewayFactory, video_server: VideoServer) -> None:
    orphan = make_gateway(triton_grpc_url=f"127.0.0.1:{free_port()}")
    with orphan.client() as c:
        r = c.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), **FAST})
        assert_error(r, 503, "triton_unavailable")
        assert int(r.headers["retry-after"]) > 0
        health = c.get("/api/v1/health")
        assert health.status_code == 503 and health.json()["checks"]["triton"]["ok"] is False
    assert tmp_files(orphan) == []


def test_timeouts_are_504(make_gateway: GatewayFactory, video_server: VideoServer) -> None:
    hasty = make_gateway(triton_timeout_s=0.02, download_timeout_s=1.0)
    with hasty.client() as c:
        r = c.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), **FAST})
        assert "Triton" in assert_error(r, 504, "timeout")["error"]["message"]
        r = c.post("/api/v1/predict", json={"url": video_server.url("slow/3/face.mp4"), **FAST})
        assert "download" in assert_error(r, 504, "timeout")["error"]["message"]
    assert tmp_files(hasty) == []


def test_full_queue_is_429_with_retry_after(make_gateway: GatewayFactory, video_server: VideoServer) -> None:
    busy = make_gateway(max_concurrent_predictions=1, max_queued_predictions=0)
    with holding_a_slot(busy, video_server, 2) as c:
        r = c.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), **FAST})
        assert_error(r, 429, "overloaded")
        assert int(r.headers["retry-after"]) > 0


def test_unknown_routes_and_media_are_json_404(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/nothing"), 404, "not_found")
    assert_error(client.get("/media/0123456789abcdef.mp4"), 404, "not_found")
    assert_error(client.get("/media/..%2F..%2Fetc%2Fpasswd.mp4"), 404, "not_found")
    assert_error(client.get("/api/v1/predict"), 405, "method_not_allowed")


def test_triton_stopped_mid_test_then_recovers(
    make_gateway: GatewayFactory, video_server: VideoServer, model_repository: Path, tmp_path: Path
) -> None:
    """A second Triton just for this test: serve, stop it (503), start it again on the same ports (recovery)."""
    own = TritonProcess.on_free_ports(tmp_path / "triton-restart.log", ServerOptions(model_repository=model_repository))
    own.start()
    try:
        gw = make_gateway(triton_grpc_url=own.grpc_url)
        request = {"url": video_server.url("face.mp4"), **FAST}
        with gw.client() as c:
            assert c.post("/api/v1/predict", json=request).status_code == 200
            own.stop()
            r = c.post("/api/v1/predict", json=request)
            assert_error(r, 503, "triton_unavailable")
            assert "retry-after" in r.headers
            assert c.get("/api/v1/health").status_code == 503
            own.start()  # same options: the same ports
            deadline = time.monotonic() + 30
            while (r := c.post("/api/v1/predict", json=request)).status_code == 503:
                assert time.monotonic() < deadline, "the gateway did not reconnect to the restarted Triton"
                time.sleep(0.5)
            assert r.status_code == 200, r.text
            assert c.get("/api/v1/health").status_code == 200
        assert tmp_files(gw) == []
    finally:
        own.stop()


def test_unexpected_failure_is_a_generic_500_then_recovery(
    make_gateway: GatewayFactory, video_server: VideoServer
) -> None:
    """A real fault under the gateway (its temp folder replaced by a file): 500, no internals leaked, then fine."""
    gw = make_gateway()
    tmp = gw.tmp_dir
    shutil.rmtree(tmp)
    tmp.write_text("not a folder")
    try:
        with gw.client() as c:
            r = c.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), **FAST})
            body = assert_error(r, 500, "internal_error")
            assert "Traceback" not in r.text and str(tmp) not in r.text and "Error" not in body["error"]["message"]
    finally:
        tmp.unlink()
        tmp.mkdir()
    with gw.client() as c:
        assert_serves(c, video_server)


def test_triton_rejection_is_422_with_the_models_message(
    make_gateway: GatewayFactory, video_server: VideoServer, tmp_path: Path
) -> None:
    """A video the gateway's probe accepts (its pixel limit raised here) but video_decode refuses (frame over its
    own limit): Triton's INVALID_ARGUMENT becomes a 422 carrying the model's own words."""
    from tests.media import write_video

    path = tmp_path / "huge.mp4"
    write_video(path, [np.full((2176, 4352, 3), 90, np.uint8)] * 2, fps=25)
    lenient = make_gateway(max_pixels=2**40)
    with lenient.client() as client:
        r = client.post(
            "/api/v1/predict/upload", files={"file": ("huge.mp4", path.read_bytes())}, data={"num_frames": "2"}
        )
        message = assert_error(r, 422, "unsupported_video")["error"]["message"]
        assert "4352x2176" in message and "in ensemble" not in message and "too large to analyse" not in message
        assert_serves(client, video_server)
