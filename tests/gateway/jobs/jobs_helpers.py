"""Helpers of the jobs tests: waiting for a job, reading its event stream, a loopback callback receiver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

TERMINAL = ("done", "failed")
STATUS_ORDER = ["queued", "downloading", "analysing", "rendering", "uploading", "done", "failed"]


def submit(client: httpx.Client, body: dict[str, Any], **headers: str) -> list[str]:
    r = client.post("/api/v1/jobs", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return [j["id"] for j in r.json()["jobs"]]


def wait_job(client: httpx.Client, job_id: str, timeout: float = 300.0, until: tuple[str, ...] = TERMINAL) -> dict:
    """Poll ``GET /api/v1/jobs/{id}`` until its status is in ``until``."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in until:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout} s: {job}"
        time.sleep(0.1)


def read_events(client: httpx.Client, job_id: str, timeout: float = 180.0) -> list[tuple[str, dict]]:
    """Every (event, data) of ``GET /api/v1/jobs/{id}/events`` until the server ends the stream."""
    events: list[tuple[str, dict]] = []
    name = ""
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


class CallbackReceiver:
    """A loopback HTTP server recording the JSON POSTed to it; ``fail_next`` answers 500 to the next n."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = 200
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    status = 500
                else:
                    receiver.received.append(json.loads(body))
                receiver.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def wait(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} callbacks received, expected {count}"
            time.sleep(0.05)
        return self.received
