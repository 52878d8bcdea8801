"""Access control end to end: real uvicorn gateways with ``auth=keys`` (keys made by the CLI's code or the CLI
itself), the real Triton behind them, raw sockets where the point is what the gateway does *before* reading a body.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.core.settings import Settings
from gateway.keys import create
from gateway.services.access.api_keys import key_id_of
from tests.fakes.cloudinary_server import FakeCloudinary
from tests.gateway.access.test_keys_cli import keys_cli
from tests.gateway.conftest import (
    FAST,
    GatewayFactory,
    GatewayServer,
    VideoServer,
    assert_error,
    gateway_settings,
    tmp_files,
)
from triton_runtime.process import TritonProcess


@pytest.fixture(scope="module")
def keyed(triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A gateway with API keys (the default), 60 requests per minute per key unless the key says otherwise."""
    settings = gateway_settings(tmp_path_factory.mktemp("auth-gateway"), triton.grpc_url, auth="keys")
    with GatewayServer(settings) as server:
        yield server


@pytest.fixture(scope="module")
def key(keyed: GatewayServer) -> str:
    """A key without a rate limit (the other tests of this module share it)."""
    return create(keyed.settings.api_keys_path, "tests", 0)


def test_the_default_is_keys() -> None:
    assert Settings(_env_file=None).auth == "keys"  # type: ignore[call-arg]


def test_api_routes_need_a_valid_key(keyed: GatewayServer, key: str, video_server: VideoServer) -> None:
    with keyed.client() as c:
        for method, path, kwargs in (
            ("GET", "/api/v1/info", {}),
            ("POST", "/api/v1/predict", {"json": {"url": video_server.url("face.mp4")}}),
            ("POST", "/api/v1/predict/upload", {"files": {"file": ("f.mp4", b"0" * 1000)}}),
            ("POST", "/api/v1/predict/batch", {"json": {"urls": [video_server.url("face.mp4")]}}),
            ("POST", "/api/v1/jobs", {"json": {"url": video_server.url("face.mp4")}}),
            ("GET", "/api/v1/jobs/0123456789abcdef0123456789abcdef", {}),
            ("GET", "/api/v1/jobs/0123456789abcdef0123456789abcdef/events", {}),
        ):
            missing = c.request(method, path, **kwargs)
            message = assert_error(missing, 401, "unauthorized")["error"]["message"]
            assert "X-API-Key" in message and "Bearer" in message
            assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = key[:-3] + ("abc" if not key.endswith("abc") else "xyz")  # the right id, a wrong secret
        for headers in (
            {"X-API-Key": wrong},
            {"Authorization": f"Bearer {wrong}"},
            {"X-API-Key": "hello"},
            {"Authorization": f"Basic {key}"},  # a key, but not as a bearer token
            {"X-API-Key": ""},
        ):
            r = c.get("/api/v1/info", headers=headers)
            assert_error(r, 401, "unauthorized")
            assert key not in r.text
        for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}, {"authorization": f"bearer {key}"}):
            r = c.get("/api/v1/info", headers=headers)
            assert r.status_code == 200 and r.json()["model"]["name"], r.text


def test_open_routes_need_no_key(keyed: GatewayServer) -> None:
    with keyed.client() as c:
        health = c.get("/api/v1/health")
        assert health.status_code in (200, 503) and "checks" in health.json()
        assert c.get("/metrics").status_code == 200 and "gateway_requests" in c.get("/metrics").text
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        assert c.get("/docs").status_code == 200
        schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
        assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}  # /docs has an Authorize button
        with c.stream("GET", "/api/v1/progress/abcdefgh1234") as stream:  # EventSource cannot send a key
            assert stream.status_code == 200
            assert next(stream.iter_lines()) == "retry: 2000"
        assert c.get("/media/0123456789abcdef0123456789abcdef.mp4").status_code == 404  # not 401


def test_predictions_with_a_key(keyed: GatewayServer, key: str, video_server: VideoServer) -> None:
    with keyed.client() as c:
        by_url = c.post(
            "/api/v1/predict",
            json={"url": video_server.url("face.mp4"), **FAST},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert by_url.status_code == 200 and by_url.json()["predicted_class"] in ("REAL", "FAKE"), by_url.text
        upload = c.post(
            "/api/v1/predict/upload",
            files={"file": ("f.mp4", (video_server.root / "face.mp4").read_bytes())},
            data={"num_frames": "4", "heatmap": "false"},
            headers={"X-API-Key": key},
        )
        assert upload.status_code == 200 and upload.json()["frames_analyzed"] == 4, upload.text
    assert tmp_files(keyed) == []


def test_keys_made_and_revoked_by_the_cli_apply_without_a_restart(keyed: GatewayServer) -> None:
    store = str(keyed.settings.api_keys_path)
    made = keys_cli("--file", store, "create", "--name", "late")
    assert made.returncode == 0, made.stderr
    late = made.stdout.strip()
    with keyed.client() as c:
        assert c.get("/api/v1/info", headers={"X-API-Key": late}).status_code == 200
        revoked = keys_cli("--file", store, "revoke", key_id_of(late) or "")
        assert revoked.returncode == 0, revoked.stderr
        r = c.get("/api/v1/info", headers={"X-API-Key": late})
        message = assert_error(r, 401, "unauthorized")["error"]["message"]
        assert "revoked" in message and (key_id_of(late) or "") in message and late not in r.text


def test_rate_limit_per_key_then_recovery(keyed: GatewayServer, key: str) -> None:
    limited = create(keyed.settings.api_keys_path, "limited", 30)
    statuses: list[int] = []
    with keyed.client() as c:
        for _ in range(200):
            r = c.get("/api/v1/info", headers={"X-API-Key": limited})
            statuses.append(r.status_code)
            if r.status_code != 200:
                break
        assert statuses[-1] == 429, statuses
        assert statuses.count(200) >= 30  # the burst: a full minute's allowance
        message = assert_error(r, 429, "rate_limited")["error"]["message"]
        assert "30 requests per minute" in message and (key_id_of(limited) or "") in message
        retry_after = int(r.headers["retry-after"])
        assert 1 <= retry_after <= 2  # 30/min: a token every 2 s
        assert c.get("/api/v1/info", headers={"X-API-Key": key}).status_code == 200  # other keys are not affected
        time.sleep(retry_after + 0.2)
        assert c.get("/api/v1/info", headers={"X-API-Key": limited}).status_code == 200


def test_cors_is_off_by_default(keyed: GatewayServer, key: str) -> None:
    preflight = {"Origin": "https://app.example.org", "Access-Control-Request-Method": "POST"}
    with keyed.client() as c:
        r = c.options("/api/v1/predict", headers={**preflight, "Access-Control-Request-Headers": "x-api-key"})
        assert "access-control-allow-origin" not in r.headers and r.status_code != 200
        r = c.get("/api/v1/info", headers={"Origin": "https://app.example.org", "X-API-Key": key})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_when_configured(make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    gw = make_gateway(auth="keys", cors_origins="https://app.example.org, https://other.example.org")
    started = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("access: API keys from") for m in started) and not any("OPEN" in m for m in started)
    key = create(gw.settings.api_keys_path, "browser", 0)
    preflight = {
        "Origin": "https://app.example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key, content-type",
    }
    with gw.client() as c:
        r = c.options("/api/v1/predict", headers=preflight)  # no key: a preflight carries none
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == "https://app.example.org"
        assert "x-api-key" in r.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in r.headers
        stranger = c.options("/api/v1/predict", headers={**preflight, "Origin": "https://evil.example.com"})
        assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers
        r = c.get("/api/v1/info", headers={"Origin": "https://other.example.org", "X-API-Key": key})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://other.example.org"
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
        r = c.get("/api/v1/info", headers={"Origin": "https://app.example.org"})  # CORS does not replace the key
        assert_error(r, 401, "unauthorized")


def test_open_access_is_explicit_logged_and_limited_per_address(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    gw = make_gateway(auth="open", open_rate_per_minute=30)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("access is OPEN" in m and "GATEWAY_AUTH=keys" in m for m in warnings), warnings
    statuses: list[int] = []
    with gw.client() as c:
        for _ in range(200):
            r = c.get("/api/v1/info")  # no key needed
            statuses.append(r.status_code)
            if r.status_code != 200:
                break
        assert statuses.count(200) >= 30 and statuses[-1] == 429, statuses
        assert "per client address" in assert_error(r, 429, "rate_limited")["error"]["message"]
        assert int(r.headers["retry-after"]) >= 1
        assert c.get("/api/v1/health").status_code in (200, 503)  # health is never limited


# --- upload size limits, before the body is read ------------------------------------------------------------------

LIMIT = 400_000
BOUNDARY = "limit-test-boundary"


def _send_raw(gw: GatewayServer, head: dict[str, str], body: Iterator[bytes]) -> tuple[int, dict[str, Any], int]:
    """POST /api/v1/predict/upload on a raw socket; send body pieces until the gateway answers. Returns the status,
    the JSON body and how many body bytes went out."""
    host, port = gw.settings.host, gw.settings.port
    lines = ["POST /api/v1/predict/upload HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in head.items())]
    sock = socket.create_connection((host, port), timeout=60)
    sent = 0
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sock.setblocking(False)
        pending = b""
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, "the gateway neither answered nor read the body"
            readable, writable, _ = select.select([sock], [sock] if pending or body else [], [], 5)
            if readable:
                break
            if writable:
                if not pending:
                    pending = next(body, b"")
                    if not pending:
                        body = iter(())
                        continue
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += n
                pending = pending[n:]
        sock.setblocking(True)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _content_length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, json.loads(payload), sent


def _content_length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _chunked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"


def _endless_file_part(total: int) -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    for _ in range(total // 65536):
        yield b"\0" * 65536


def _endless_epilogue(total: int) -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="small.mp4"\r\n\r\n'
        f"small\r\n--{BOUNDARY}--\r\n"
    ).encode()
    for _ in range(total // 65536):
        yield b"x" * 65536  # after the last boundary: no part, only the whole-body limit can stop it


def test_oversized_uploads_are_413_before_the_body_is_read(
    make_gateway: GatewayFactory, video_server: VideoServer
) -> None:
    gw = make_gateway(auth="keys", max_upload_bytes=LIMIT)
    key = create(gw.settings.api_keys_path, "uploader", 0)
    multipart = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "X-API-Key": key}
    huge = 64 * 1024 * 1024

    # Declared too large: refused from the headers alone, no body byte sent.
    status, body, sent = _send_raw(gw, {**multipart, "Content-Length": str(10**10)}, iter(()))
    assert status == 413 and body["error"]["type"] == "too_large" and str(LIMIT) in body["error"]["message"]
    # No key: refused before anything else, too.
    no_key = {k: v for k, v in multipart.items() if k != "X-API-Key"}
    status, body, _ = _send_raw(gw, {**no_key, "Content-Length": str(10**10)}, iter(()))
    assert status == 401 and body["error"]["type"] == "unauthorized"

    # No Content-Length (chunked): counted while streaming, refused long before the 64 MB are sent.
    for pieces in (_endless_file_part(huge), _endless_epilogue(huge)):
        status, body, sent = _send_raw(gw, {**multipart, "Transfer-Encoding": "chunked"}, _chunked(pieces))
        assert status == 413 and body["error"]["type"] == "too_large", body
        assert sent < huge // 4, f"{sent} bytes went out before the 413"
    assert tmp_files(gw) == []

    with gw.client() as c:  # still serving; an upload under the limit is analysed
        small = (video_server.root / "face.mp4").read_bytes()
        assert len(small) < LIMIT
        ok = c.post("/api/v1/predict/upload", files={"file": ("f.mp4", small)}, data=FAST, headers={"X-API-Key": key})
        assert ok.status_code == 200, ok.text


# --- no secret in logs or answers ---------------------------------------------------------------------------------


def test_no_secret_in_logs_or_answers(
    triton: TritonProcess,
    tmp_path: Path,
    video_server: VideoServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    cloud_secret = "cl0udinary-s3cret-value"
    with FakeCloudinary("123456789012345", cloud_secret, "demo") as fake:
        # The Cloudinary credentials come from the environment only (CLOUDINARY_URL), as in production.
        monkeypatch.setenv("CLOUDINARY_URL", fake.cloudinary_url)
        values = gateway_settings(tmp_path / "data", triton.grpc_url).model_dump(exclude={"cloudinary_url", "storage"})
        settings = Settings(_env_file=None, **{**values, "auth": "keys", "storage": "cloudinary"})  # type: ignore[call-arg]
        settings.cloudinary_backoff_s = 0.01
        assert settings.cloudinary_url is not None and cloud_secret not in repr(settings)
        caplog.set_level(logging.DEBUG)
        with GatewayServer(settings) as gw:
            key = create(settings.api_keys_path, "secrets", 0)
            secret = key.split("_", 2)[2]
            wrong = f"dfk_{key_id_of(key)}_{'A' * 43}"
            answers: list[httpx.Response] = []
            with gw.client() as c:
                answers.append(c.get("/api/v1/info"))
                answers.append(c.get("/api/v1/info", headers={"X-API-Key": wrong}))
                answers.append(c.get("/api/v1/info", headers={"Authorization": f"Bearer {key}x"}))
                fake.fail_next(100, status=500, message=f"boom {cloud_secret}?")  # even if Cloudinary echoed it
                answers.append(
                    c.post(
                        "/api/v1/predict",
                        json={"url": video_server.url("face.mp4"), **FAST},
                        headers={"Authorization": f"Bearer {key}"},
                    )
                )
                answers.append(
                    c.post("/api/v1/predict/upload", files={"file": ("x.mp4", b"junk")}, headers={"X-API-Key": key})
                )
                answers.append(c.get("/api/v1/info", headers={"X-API-Key": key}))
    assert [r.status_code for r in answers] == [401, 401, 401, 200, 422, 200]
    predicted = answers[3].json()
    assert predicted["output_url"] is None and predicted["errors"][0]["stage"] == "upload"  # the failure happened
    assert fake.requests, "the gateway did try Cloudinary"
    logs = caplog.text
    assert "storing the overlay failed" in logs and key_id_of(key) in logs  # the logs say what happened, and who
    out, err = capfd.readouterr()
    for text in [logs, out, err, *(r.text for r in answers), *(str(r.headers) for r in answers)]:
        assert secret not in text and cloud_secret not in text
