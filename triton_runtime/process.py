"""Run the local Triton server as a child process on free loopback ports (tests, benchmarks, `make demo`)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from triton_runtime.server import ServerOptions, prepare_backend_dir, server_command, server_env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class TritonStartError(RuntimeError):
    """The server exited or did not become ready in time; the message carries the end of its log."""


@dataclass
class TritonProcess:
    """A tritonserver child process. Use as a context manager; `log_path` keeps its output."""

    options: ServerOptions
    log_path: Path
    startup_timeout_s: float = 120.0
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def on_free_ports(cls, log_path: Path, options: ServerOptions | None = None) -> TritonProcess:
        """These options (default: the project's repository) with three free loopback ports."""
        opts = replace(
            options or ServerOptions(), http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
        )
        return cls(options=opts, log_path=log_path)

    @property
    def http_url(self) -> str:
        return f"{self.options.host}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.options.host}:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.host}:{self.options.metrics_port}/metrics"

    def start(self) -> TritonProcess:
        """Start the server and wait until /v2/health/ready answers 200."""
        prepare_backend_dir(self.options.backend_dir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            server_command(self.options), stdout=log, stderr=subprocess.STDOUT, env=server_env()
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TritonStartError(f"tritonserver exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.is_ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise TritonStartError(f"tritonserver not ready after {self.startup_timeout_s:.0f} s:\n{self.log_tail()}")

    def is_ready(self) -> bool:
        """True when the server answers ready (all models loaded)."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, chars: int = 6000) -> str:
        """The end of the server log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> TritonProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
