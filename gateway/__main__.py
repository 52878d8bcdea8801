"""``python -m gateway``: serve the gateway with uvicorn (settings from the environment, prefix GATEWAY_).

``--with-triton`` (``make serve``) also starts the local Triton on its default ports unless one already answers at
``GATEWAY_TRITON_GRPC_URL``, and stops it when the gateway stops (Ctrl-C stops both).

Access: API keys (``GATEWAY_AUTH=keys``, the default) unless told otherwise. ``--with-triton`` on a loopback address
is the local development server: there, without ``--auth`` or ``GATEWAY_AUTH``, access is open (logged at start).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Literal

import uvicorn

from deepfake_core.paths import REPO_ROOT
from gateway.core.settings import Settings
from gateway.main import create_app
from triton_runtime.process import TritonProcess
from triton_runtime.server import ServerOptions

log = logging.getLogger("gateway")


def triton_is_up(grpc_url: str) -> bool:
    """True when a Triton answers ready at ``grpc_url``."""
    import tritonclient.grpc as grpcclient

    try:
        with grpcclient.InferenceServerClient(grpc_url) as client:
            return bool(client.is_server_ready(client_timeout=2))
    except Exception:  # unreachable, refused, not a Triton: not up
        return False


def local_triton(grpc_url: str, log_path: Path) -> TritonProcess:
    """A TritonProcess for ``grpc_url`` (loopback host:port; HTTP and metrics on their defaults)."""
    host, _, port = grpc_url.rpartition(":")
    # Poll mode: `make export --checkpoint PATH` while it runs swaps the classifier without a restart.
    options = ServerOptions(
        host=host or "127.0.0.1", grpc_port=int(port), model_control_mode="poll", repository_poll_secs=5
    )
    return TritonProcess(options=options, log_path=log_path)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def access_mode(
    flag: str | None, with_triton: bool, settings: Settings, environ: Mapping[str, str]
) -> Literal["keys", "open"]:
    """``--auth`` when given; open for the local development server (``--with-triton`` on loopback, no
    ``GATEWAY_AUTH``); else the setting (keys unless GATEWAY_AUTH says open). The app logs a warning when open."""
    if flag in ("keys", "open"):
        return "open" if flag == "open" else "keys"
    if with_triton and "GATEWAY_AUTH" not in environ and is_loopback(settings.host):
        return "open"
    return settings.auth


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.splitlines()[0])
    p.add_argument("--host", help="override GATEWAY_HOST")
    p.add_argument("--port", type=int, help="override GATEWAY_PORT")
    p.add_argument("--with-triton", action="store_true", help="start the local Triton too (unless one is up)")
    p.add_argument(
        "--auth",
        choices=("keys", "open"),
        help="override GATEWAY_AUTH (default keys; open for --with-triton on a loopback address)",
    )
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in (("host", a.host), ("port", a.port)) if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    settings.auth = access_mode(a.auth, a.with_triton, settings, os.environ)
    server: TritonProcess | None = None
    if a.with_triton:
        if triton_is_up(settings.triton_grpc_url):
            log.info("using the Triton already running at %s", settings.triton_grpc_url)
        else:
            server = local_triton(settings.triton_grpc_url, REPO_ROOT / "results" / "serve-triton.log")
            log.info("starting the local Triton at %s (log: %s) ...", settings.triton_grpc_url, server.log_path)
    try:
        with server or nullcontext():
            uvicorn.run(
                create_app(settings),
                host=settings.host,
                port=settings.port,
                log_level=a.log_level,
                timeout_keep_alive=settings.keep_alive_s,
            )
    except Exception as exc:  # e.g. TritonStartError: say why and exit non-zero
        sys.exit(f"gateway: {exc}")


if __name__ == "__main__":
    main()
