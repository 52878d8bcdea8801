"""`make demo`: a generated sample video through the gateway's POST /api/v1/predict, end to end.

Starts what is not running yet (the local Triton on its default ports 8000-8002, the gateway on 127.0.0.1:5050),
serves a generated 3 s 640x360 face video from a loopback HTTP server, asks the gateway to analyse its URL, prints
the JSON answer and where the overlay video is, then stops what it started.

A gateway it starts has open access (loopback only); for one already running with API keys, set
``DEEPFAKE_API_KEY`` (sent as ``X-API-Key``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from deepfake_core.paths import REPO_ROOT
from deepfake_core.sample_clip import face_video
from gateway.__main__ import local_triton, triton_is_up
from gateway.api import API_PREFIX

DEMO_DIR = REPO_ROOT / "results" / "demo"
DEFAULT_GATEWAY = "http://127.0.0.1:5050"
DEFAULT_TRITON = "127.0.0.1:8001"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on a free loopback port (a thread); yields the base URL."""
    handler = partial(_QuietHandler, directory=str(directory))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="demo-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def gateway_health(base_url: str) -> int | None:
    """The gateway's health status code, or None when nothing answers there."""
    try:
        return httpx.get(f"{base_url}{API_PREFIX}/health", timeout=5).status_code
    except httpx.HTTPError:
        return None


@contextmanager
def gateway_process(
    env: dict[str, str], base_url: str, log_path: Path, timeout_s: float = 180
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m gateway`` with these GATEWAY_* variables, until it answers healthy; yields the process (its pid
    for memory figures); stopped at the end."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--log-level", "warning"],
            env={**os.environ, **env},
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while gateway_health(base_url) != 200:
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {proc.returncode}; log: {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway was not healthy after {timeout_s:.0f} s; log: {log_path}")
            time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sample_video() -> Path:
    """A 3 s 640x360 face video generated from skimage's public-domain astronaut image (cached)."""
    path = DEMO_DIR / "sample_face.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        face_video(path, width=640, height=360, fps=25, seconds=3.0)
    return path


def overlay_location(output_url: str | None, data_dir: Path) -> str:
    """Where the overlay video is: the local file for local storage, else its URL."""
    if not output_url:
        return "(not stored; see errors)"
    name = output_url.rsplit("/", 1)[-1]
    local = data_dir / "media" / name
    if "/media/" in output_url and local.is_file():
        return f"{local}  (served at {output_url})"
    return output_url


def pretty_json(body: dict[str, Any]) -> str:
    """Indented JSON with one line per frame score (readable in a terminal)."""
    frames = body.get("frame_scores")
    if not isinstance(frames, list) or not frames:
        return json.dumps(body, indent=2)
    text = json.dumps({**body, "frame_scores": "@FRAMES@"}, indent=2)
    rows = ",\n".join(f"    {json.dumps(f)}" for f in frames)
    return text.replace('"@FRAMES@"', f"[\n{rows}\n  ]")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m gateway.demo", description=__doc__.splitlines()[0])
    p.add_argument("--gateway", default=DEFAULT_GATEWAY, help="base URL of the gateway (started when not up)")
    p.add_argument("--triton", default=DEFAULT_TRITON, help="Triton's gRPC address (started when not up)")
    p.add_argument("video", nargs="?", type=Path, help="a video file (default: a generated sample)")
    a = p.parse_args(argv)
    video = (a.video or sample_video()).resolve()
    data_dir = REPO_ROOT / "data"
    with ExitStack() as stack:
        if triton_is_up(a.triton):
            print(f"using the Triton at {a.triton}")
        else:
            server = local_triton(a.triton, DEMO_DIR / "triton.log")
            print(f"starting a local Triton at {a.triton} (log: {server.log_path}) ...", flush=True)
            stack.enter_context(server)
        if gateway_health(a.gateway) is not None:
            print(f"using the gateway at {a.gateway}")
        else:
            host_port = a.gateway.split("://", 1)[-1].rstrip("/")
            env = {
                "GATEWAY_HOST": host_port.rsplit(":", 1)[0],
                "GATEWAY_PORT": host_port.rsplit(":", 1)[1],
                "GATEWAY_PUBLIC_BASE_URL": a.gateway,
                "GATEWAY_TRITON_GRPC_URL": a.triton,
                "GATEWAY_DATA_DIR": str(data_dir),
                "GATEWAY_ALLOWED_HOSTS": "127.0.0.1",  # the sample is served from loopback
                "GATEWAY_AUTH": "open",  # a loopback gateway of its own
            }
            print(f"starting the gateway at {a.gateway} (log: {DEMO_DIR / 'gateway.log'}) ...", flush=True)
            stack.enter_context(gateway_process(env, a.gateway, DEMO_DIR / "gateway.log"))
        base = stack.enter_context(serve_directory(video.parent))
        url = f"{base}/{video.name}"
        print(f"POST {a.gateway}{API_PREFIX}/predict {{'url': '{url}'}}", flush=True)
        key = os.environ.get("DEEPFAKE_API_KEY")
        headers = {"X-API-Key": key} if key else {}
        with httpx.Client(base_url=a.gateway, timeout=300, headers=headers) as client:
            r = client.post(f"{API_PREFIX}/predict", json={"url": url})
            if r.status_code == 400 and r.json().get("error", {}).get("type") == "url_refused":
                print("that gateway refuses loopback URLs (no GATEWAY_ALLOWED_HOSTS): uploading the file instead")
                with video.open("rb") as f:
                    r = client.post(f"{API_PREFIX}/predict/upload", files={"file": (video.name, f, "video/mp4")})
        body = r.json()
        if r.status_code == 401:
            sys.exit(f"{a.gateway} needs an API key: set DEEPFAKE_API_KEY (python -m gateway.keys create --name demo)")
        print(pretty_json(body))
        if r.status_code != 200:
            sys.exit(f"the gateway answered {r.status_code}")
        print(f"\nverdict: {body['predicted_class']} ({body['confidence']}%), {body['execution_time']}")
        print(f"overlay video: {overlay_location(body.get('output_url'), data_dir)}")


if __name__ == "__main__":
    main()
