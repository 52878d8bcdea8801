"""The local stack of the benchmarks and load tests: Triton and ``python -m gateway`` on free loopback ports (local
storage in a temp data dir, loopback admitted as a video source), and a loopback HTTP server of the clips."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.demo import gateway_process, serve_directory
from triton_runtime.process import TritonProcess, free_port


@dataclass(frozen=True)
class LocalStack:
    """What ``local_stack`` started: URLs and the processes (for memory figures)."""

    gateway_url: str
    media_url: str
    triton: TritonProcess
    gateway: subprocess.Popen[bytes]
    data_dir: Path


@contextmanager
def local_stack(
    media_dir: Path, logs_dir: Path, name: str, extra_env: dict[str, str] | None = None
) -> Iterator[LocalStack]:
    """Triton, the gateway and an HTTP server of ``media_dir``, all on free loopback ports; stopped at the end.

    Logs go to ``logs_dir/<name>-triton.log`` and ``<name>-gateway.log``; ``extra_env`` adds GATEWAY_* settings.
    """
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    logs_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        triton = stack.enter_context(TritonProcess.on_free_ports(logs_dir / f"{name}-triton.log"))
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{name}-data-", dir=logs_dir)))
        env = {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "GATEWAY_PUBLIC_BASE_URL": gateway_url,
            "GATEWAY_TRITON_GRPC_URL": triton.grpc_url,
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_STORAGE": "local",
            "GATEWAY_ALLOWED_HOSTS": "127.0.0.1",  # the clips are served from loopback
            "GATEWAY_AUTH": "open",  # a loopback gateway of its own, for measurements
            "GATEWAY_OPEN_RATE_PER_MINUTE": "0",  # no per-address limit: the load is the point
            **(extra_env or {}),
        }
        gateway = stack.enter_context(gateway_process(env, gateway_url, logs_dir / f"{name}-gateway.log"))
        media_url = stack.enter_context(serve_directory(media_dir))
        yield LocalStack(gateway_url, media_url, triton, gateway, data_dir)
