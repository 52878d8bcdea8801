"""The FastAPI application: ``create_app(settings)``; ``gateway.main:app`` for ``uvicorn`` (built on first access).

The lifespan builds the long-lived clients once (Triton gRPC aio, the download HTTP client, the PyTorch twin with
its Grad-CAM engine, the storage, the job store) and closes them on shutdown; it also runs the job workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway.api.routes import ROUTERS
from gateway.api.routes.web import mount_web
from gateway.core.errors import register_exception_handlers
from gateway.core.settings import Settings
from gateway.services.container import build_services, load_gradcam
from gateway.services.inference.twin_follower import TwinFollower
from gateway.services.intake.url_guard import Resolver, system_resolver
from gateway.services.metrics import Metrics, RequestContextMiddleware

log = logging.getLogger("gateway")

API_VERSION = "1.0.0"
DESCRIPTION = (
    "Deepfake video detection: send a video (URL or upload), get a verdict (REAL / FAKE / NO_FACE), per-frame "
    "scores and a Grad-CAM overlay video. Inference runs on NVIDIA Triton."
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    services = await build_services(app.state.settings, app.state.metrics, app.state.resolver)
    app.state.services = services
    follower = TwinFollower(
        services.settings, services.triton, services.served, lambda path: load_gradcam(services.settings, path)
    )
    task = None
    if services.settings.twin_reload_interval_s > 0:
        try:
            await follower.check()  # Triton serves a checkpoint the gateway has: the twin follows before serving
        except Exception:  # noqa: BLE001 - the twin it started with stays; the mismatch is reported
            log.exception("loading the served classifier's twin failed")
        task = asyncio.create_task(follower.run())
    services.runner.start()
    await services.pipeline.provenance.start()  # the C2PA reader's worker processes, warmed up
    try:
        yield
    finally:
        if task:
            task.cancel()
        await services.aclose()
        await services.pipeline.provenance.aclose()


def create_app(settings: Settings | None = None, *, resolver: Resolver = system_resolver) -> FastAPI:
    """The gateway application for these settings (default: from the environment).

    ``resolver``: how the download guard resolves hostnames (the system's getaddrinfo; tests inject their own so
    that no DNS query leaves the machine).
    """
    settings = settings or Settings()
    metrics = Metrics()
    app = FastAPI(
        title="Deepfake detection gateway",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.resolver = resolver
    register_exception_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    if settings.cors_origins:  # added last: outermost, so preflights are answered before anything else
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    for router in ROUTERS:
        app.include_router(router)
    mount_web(app)  # the web page at / and its progress stream
    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    """``gateway.main:app``: built from the environment on first access (importing this module builds nothing)."""
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
