"""The processes of the chaos benchmark and the fault tests, each one a real OS process that can be killed with
SIGKILL, frozen with SIGSTOP and started again on the same port and data: ``redis-server`` (AOF on) and
``python -m gateway`` (job workers on)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import redis

from deepfake_core.paths import REPO_ROOT
from triton_runtime.process import free_port


class ProcessStartError(RuntimeError):
    """A process exited or did not answer in time; the message carries the end of its log."""


def log_tail(path: Path, chars: int = 4000) -> str:
    """The end of a log file ("(no log)" when it cannot be read)."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def wait_ready(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, log_path: Path, timeout_s: float, poll_s: float
) -> None:
    """Poll ``ready`` until it says yes; if ``proc`` exits or ``timeout_s`` passes first, kill it and raise
    ``ProcessStartError`` with the end of its log."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            kill9(proc)
            raise ProcessStartError(f"{what} did not start:\n{log_tail(log_path)}")
        time.sleep(poll_s)


def kill9(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL ``proc`` and reap it (nothing if it already ended)."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(30)


def kill9_tree(proc: subprocess.Popen[bytes] | None) -> int:
    """SIGKILL ``proc`` and every descendant at once, as when its container dies (tritonserver's Python-backend
    stubs would otherwise outlive it, orphaned); the number of descendants killed."""
    if proc is None or proc.poll() is not None:
        return 0
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    kill9(proc)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(children, timeout=10)
    return len(children)


def terminate(proc: subprocess.Popen[bytes] | None, timeout_s: float = 30.0) -> None:
    """SIGTERM (a clean stop; SIGCONT first in case it was frozen), SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    with_cont(proc)
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        kill9(proc)


def with_cont(proc: subprocess.Popen[bytes]) -> None:
    """SIGCONT (harmless on a running process)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)


@dataclass
class RedisProcess:
    """``redis-server`` on ``127.0.0.1:<port>``, its AOF (``appendonly yes``) in ``directory``."""

    directory: Path
    appendfsync: str = "always"
    port: int = field(default_factory=free_port)
    binary: str = field(default_factory=lambda: shutil.which("redis-server") or "redis-server")
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def start(self, timeout_s: float = 30.0) -> RedisProcess:
        """Start (on the same port and data as before, after a kill) and wait for PONG."""
        self.directory = self.directory.resolve()  # redis-server chdirs to --dir before opening --logfile
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory)]
        args += ["--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "", "--daemonize", "no"]
        args += ["--protected-mode", "yes", "--logfile", str(self.log_path)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(self.proc, self._pong, "redis-server", self.log_path, timeout_s, 0.05)
        return self

    def _pong(self) -> bool:
        try:
            with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1) as r:
                return bool(r.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """kill -9: no shutdown, no final AOF rewrite."""
        kill9(self.proc)

    def stop(self) -> None:
        terminate(self.proc)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=5)


@dataclass
class GatewayProcess:
    """``python -m gateway`` on ``127.0.0.1:<port>`` with these GATEWAY_* (and REDIS_URL) variables; its data dir
    (local storage, temp folder) is its own. Output goes to ``log_path`` (appended across restarts)."""

    data_dir: Path
    log_path: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_PUBLIC_BASE_URL": self.url,
            "GATEWAY_DATA_DIR": str(self.data_dir),
            "GATEWAY_STORAGE": "local",
            "GATEWAY_ALLOWED_HOSTS": "127.0.0.1",
            "GATEWAY_AUTH": "open",
            "GATEWAY_OPEN_RATE_PER_MINUTE": "0",
            **self.env,
        }

    def start(self, timeout_s: float = 180.0) -> GatewayProcess:
        """Start and wait until it answers (its lifespan has run: health answers 200 or 503)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--log-level", "warning"],
                env=self.environment(),
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_ready(self.proc, self._answers, "the gateway", self.log_path, timeout_s, 0.2)
        return self

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v1/health", timeout=5).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """kill -9: no lifespan shutdown, no job released, no temp file removed."""
        kill9(self.proc)

    def stop(self) -> None:
        terminate(self.proc)

    def log_tail(self, chars: int = 4000) -> str:
        return log_tail(self.log_path, chars)
