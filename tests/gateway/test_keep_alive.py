"""``python -m gateway`` keeps idle connections open for ``GATEWAY_KEEP_ALIVE_S``: a client that pauses a few
seconds between requests reuses its connection instead of racing the server's close (a soak at an 8 s pace lost
one request to uvicorn's 5 s default)."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest

from gateway.core.settings import Settings
from gateway.demo import gateway_process
from triton_runtime.process import TritonProcess, free_port

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_the_default_outlives_a_load_balancers_idle_timeout() -> None:
    assert Settings(_env_file=None).keep_alive_s > 60  # type: ignore[call-arg]  # AWS ALB and nginx: 60 s


def _health(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/api/v1/health")
    resp = conn.getresponse()
    resp.read()
    return resp.status


def test_an_idle_connection_lives_for_the_setting_and_no_longer(triton: TritonProcess, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_TRITON_GRPC_URL": triton.grpc_url,
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_STORAGE": "local",
        "GATEWAY_AUTH": "open",
        "GATEWAY_KEEP_ALIVE_S": "8",
    }
    with gateway_process(env, f"http://127.0.0.1:{port}", ARTIFACTS / "keep-alive-gateway.log"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        assert _health(conn) == 200
        sock = conn.sock
        time.sleep(6.5)  # idle past uvicorn's 5 s default, within the setting: the same connection answers
        assert _health(conn) == 200
        assert conn.sock is sock
        time.sleep(10)  # idle past the setting: the server has closed it
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            _health(conn)
        conn.close()
