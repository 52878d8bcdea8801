"""Gateway fixtures: real uvicorn servers on loopback, a real HTTP server of generated videos, the real Triton.

- ``video_server``: ``http.server`` on a free loopback port serving a temp folder, with special paths:
  ``/status/<code>`` (that status), ``/redirect?to=<url>`` (302), ``/hops/<n>/<file>`` (n redirects then the file),
  ``/slow/<seconds>/<file>`` (waits, then sends), ``/chunked/<file>`` (no Content-Length), ``/lying/<file>``
  (declares a huge Content-Length). Every request's path and Host header is recorded.
- ``GatewayServer``: ``create_app(Settings(...))`` served by uvicorn in a thread, stopped at the end.
- ``gateway``: the main gateway of the session (real Triton, local storage, 127.0.0.1 allowlisted, T=8).
- ``redis_server``: a real ``redis-server`` (Debian's package) on a free loopback port, AOF on, in a temp folder;
  ``stop()``/``start()`` restart it on the same port and data.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn

from benchmarks.chaos_stack import RedisProcess
from gateway.core.settings import Settings
from gateway.main import create_app
from gateway.services.intake.temp_files import LOCK_NAME
from gateway.services.intake.url_guard import Resolver, system_resolver
from triton_runtime.process import TritonProcess, free_port

if TYPE_CHECKING:
    from tests.bad_media import BadInput

FPS = 25
FAST = {"num_frames": 4, "heatmap": False}  # the cheapest full prediction: used to check the service still serves


# --- the video server --------------------------------------------------------------------------------------------


class _VideoHandler(SimpleHTTPRequestHandler):
    server: _VideoHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.seen.append({"path": self.path, "host": self.headers.get("Host", "")})
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        head = segments[0] if segments else ""
        if head == "status" and len(segments) == 2:
            return self._send(int(segments[1]), f"status {segments[1]}".encode(), "text/plain")
        if head == "redirect":
            return self._redirect(parse_qs(parts.query).get("to", ["/"])[0])
        if head == "hops" and len(segments) == 3:
            n = int(segments[1])
            return self._redirect(f"/hops/{n - 1}/{segments[2]}" if n > 1 else f"/{segments[2]}")
        if head == "slow" and len(segments) == 3:
            time.sleep(float(segments[1]))
            return self._file(segments[2])
        if head == "chunked" and len(segments) == 2:
            return self._file(segments[1], length=False)
        if head == "lying" and len(segments) == 2:
            return self._send(200, b"x" * 1000, "video/mp4", length=10**12)
        if len(segments) == 1:
            return self._file(segments[0])
        return self._send(404, b"not found", "text/plain")

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _file(self, name: str, length: bool = True) -> None:
        path = self.server.root / name
        if not path.is_file():
            return self._send(404, b"not found", "text/plain")
        self._send(200, path.read_bytes(), "video/mp4", length=len(path.read_bytes()) if length else None)

    def _send(self, status: int, body: bytes, ctype: str, length: int | None = -1) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is None:  # no Content-Length: the body ends when the connection closes
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body) if length == -1 else length))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the gateway hung up (a limit): fine
            self.wfile.write(body)
        if length not in (-1, None):
            self.close_connection = True


class _VideoHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _VideoHandler)
        self.root = root
        self.seen: list[dict[str, str]] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (the gateway enforcing a limit) is expected; anything else is printed."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class VideoServer:
    """The running server: ``url(path)``, ``root`` (files served), ``seen`` (requests received)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._httpd = _VideoHTTPServer(root)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="video-server", daemon=True)

    @property
    def seen(self) -> list[dict[str, str]]:
        return self._httpd.seen

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def __enter__(self) -> VideoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated videos (and the bad inputs of ``tests.bad_media``, as ``bad_file_name``) for the whole session."""
    from tests.bad_media import BAD_INPUTS, Sources
    from tests.media import face_video, faceless_video

    d = tmp_path_factory.mktemp("gateway-media")
    boxes = face_video(d / "face.mp4", width=640, height=360, fps=FPS, seconds=1.2)
    (d / "face_boxes.txt").write_text("\n".join(" ".join(f"{v:.2f}" for v in b) for b in boxes))
    faceless_video(d / "faceless.mp4", width=640, height=360, fps=FPS, seconds=1.0)
    sources = Sources(tmp_path_factory.mktemp("bad-scratch"))
    for case in BAD_INPUTS:
        (d / bad_file_name(case)).write_bytes(case.build(sources))
    return d


def bad_file_name(case: BadInput) -> str:
    """The file (served by ``video_server``) of a bad input: its name keeps the case's extension."""
    return f"bad-{case.name}-{case.filename}"


@pytest.fixture(scope="session")
def face_boxes(media_dir: Path) -> list[list[float]]:
    """Ground-truth face box per frame of face.mp4."""
    return [[float(v) for v in line.split()] for line in (media_dir / "face_boxes.txt").read_text().splitlines()]


@pytest.fixture(scope="session")
def video_server(media_dir: Path) -> Iterator[VideoServer]:
    with VideoServer(media_dir) as server:
        yield server


# --- gateways ----------------------------------------------------------------------------------------------------


class GatewayServer:
    """``create_app(settings)`` served by real uvicorn on a free loopback port in a background thread.

    ``resolver``: the download guard's DNS (tests that use names pass their own: no query leaves the machine).
    """

    def __init__(self, settings: Settings, resolver: Resolver = system_resolver) -> None:
        self.settings = settings
        self.app = create_app(settings, resolver=resolver)
        config = uvicorn.Config(
            self.app, host=settings.host, port=settings.port, log_level="warning", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)
        self.url = f"http://{settings.host}:{settings.port}"

    @property
    def tmp_dir(self) -> Path:
        return self.settings.tmp_dir

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def __enter__(self) -> GatewayServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.server.should_exit = True
                raise RuntimeError("the gateway did not start (see the log above)")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def gateway_settings(data_dir: Path, triton_grpc_url: str, **overrides: Any) -> Settings:
    """Test settings: a free port, local storage in ``data_dir``, loopback allowlisted, T=8, open access, no
    environment."""
    port = free_port()
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "public_base_url": f"http://127.0.0.1:{port}",
        "triton_grpc_url": triton_grpc_url,
        "data_dir": data_dir,
        "storage": "local",
        "allowed_hosts": ["127.0.0.1"],
        "num_frames": 8,
        "triton_timeout_s": 60.0,
        "download_timeout_s": 30.0,
        "connect_timeout_s": 5.0,
        "cloudinary_url": None,
        # Open access, stated explicitly (the default is keys): the tests of other features send no key.
        # tests/gateway/access/test_auth.py starts its own gateways with keys.
        "auth": "open",
        "open_rate_per_minute": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


GatewayFactory = Callable[..., GatewayServer]


@pytest.fixture
def make_gateway(tmp_path: Path, triton: TritonProcess) -> Iterator[GatewayFactory]:
    """Start extra gateways for one test (``make_gateway(resolver=..., **setting_overrides)``); all stopped after it."""
    started: list[GatewayServer] = []

    def make(resolver: Resolver = system_resolver, **overrides: Any) -> GatewayServer:
        data_dir = overrides.pop("data_dir", tmp_path / f"gateway-{len(started)}")
        server = GatewayServer(
            gateway_settings(data_dir, overrides.pop("triton_grpc_url", triton.grpc_url), **overrides), resolver
        )
        started.append(server.__enter__())
        return server

    yield make
    for server in reversed(started):
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def gateway(triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """The session's gateway against the real Triton."""
    settings = gateway_settings(tmp_path_factory.mktemp("gateway-data"), triton.grpc_url)
    with GatewayServer(settings) as server:
        yield server


@pytest.fixture
def client(gateway: GatewayServer) -> Iterator[httpx.Client]:
    with gateway.client() as c:
        yield c


def assert_serves(client: httpx.Client, video_server: VideoServer) -> None:
    """The gateway still answers a good prediction (the cheapest one)."""
    r = client.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), **FAST})
    assert r.status_code == 200, r.text
    assert r.json()["predicted_class"] in ("REAL", "FAKE")


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    """The error shape: status, ``error.type``, a message and the request id (also in X-Request-ID)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["type"] == error_type, body
    assert body["error"]["message"], body
    assert body["request_id"] and body["request_id"] == response.headers["x-request-id"]
    return body


def tmp_files(server: GatewayServer) -> list[str]:
    """Files left in the gateway's temp folder (must be none between requests; its lock file is not one)."""
    return temp_folder_files(server.tmp_dir)


def temp_folder_files(tmp_dir: Path) -> list[str]:
    """The entries of a gateway temp folder but the gateway's lock file."""
    return sorted(p.name for p in tmp_dir.iterdir() if p.name != LOCK_NAME) if tmp_dir.exists() else []


# --- Redis -------------------------------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A fresh redis-server for one test (AOF on, fsync every second: Redis's default), stopped after it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server is not installed (Debian: apt-get install redis-server; make test installs it as root)"
        )
    server = RedisProcess(tmp_path / "redis", appendfsync="everysec", binary=binary).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def holding_a_slot(gateway: GatewayServer, video_server: VideoServer, seconds: int) -> Iterator[httpx.Client]:
    """A prediction of a video served over ``seconds`` holds a slot of ``gateway`` for the block (a client of the
    gateway is yielded); afterwards that prediction must have succeeded and the gateway must still serve."""
    first: dict[str, httpx.Response] = {}

    def slow_request() -> None:
        with gateway.client() as c:
            first["r"] = c.post("/api/v1/predict", json={"url": video_server.url(f"slow/{seconds}/face.mp4"), **FAST})

    worker = threading.Thread(target=slow_request)
    worker.start()
    with gateway.client() as c:
        deadline = time.monotonic() + 10
        while "gateway_predictions_in_flight 1.0" not in c.get("/metrics").text:
            assert time.monotonic() < deadline, "the first request never took its slot"
            time.sleep(0.05)
        yield c
        worker.join(60)
        assert first["r"].status_code == 200, first["r"].text
        assert_serves(c, video_server)
