"""The FastAPI application: ``create_app(settings)``; ``gateway.main:app`` for ``uvicorn`` (built on first access).

The lifespan builds the long-lived clients once (Triton gRPC aio, the download HTTP client, the PyTorch twin with
its Grad-CAM engine, the storage, the job store) and closes them on shutdown; it also runs the job workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from deepfake_core import constants as C
from deepfake_core.checkpoint import load_or_untrained
from gateway.api.deps import Services
from gateway.api.routes import ROUTERS
from gateway.api.routes.web import mount_web
from gateway.core.errors import register_exception_handlers
from gateway.core.settings import Settings
from gateway.services.access import AccessControl
from gateway.services.download import Downloader, Resolver, build_download_client, system_resolver
from gateway.services.gradcam import GradCamEngine
from gateway.services.jobs.build import build_job_store
from gateway.services.jobs.worker import JobRunner
from gateway.services.metrics import Metrics, RequestContextMiddleware
from gateway.services.pipeline import Admission, ModelInfo, Pipeline
from gateway.services.storage import build_storage
from gateway.services.triton import TritonService
from gateway.services.twin_follower import TwinFollower

log = logging.getLogger("gateway")

API_VERSION = "1.0.0"
DESCRIPTION = (
    "Deepfake video detection: send a video (URL or upload), get a verdict (REAL / FAKE / NO_FACE), per-frame "
    "scores and a Grad-CAM overlay video. Inference runs on NVIDIA Triton."
)


def _load_gradcam(settings: Settings, checkpoint: Path | None) -> tuple[GradCamEngine, dict[str, Any]]:
    """The PyTorch twin (same checkpoint as the ONNX) in its Grad-CAM engine, warmed up: the first backward pass
    is several times slower than the next ones, and should not be a user's request."""
    model, metadata = load_or_untrained(checkpoint)
    engine = GradCamEngine(model, device=settings.gradcam_device)
    channels = model.frame_encoder.out_features
    side = int(metadata.get("crop_size", C.CROP_SIZE)) // 32  # the encoder's stride
    engine.compute_from_maps(
        np.zeros((settings.num_frames, channels, side, side), np.float16), np.ones(settings.num_frames, bool)
    )
    return engine, metadata


async def build_services(settings: Settings, metrics: Metrics, resolver: Resolver = system_resolver) -> Services:
    """Every long-lived client, built once. ``resolver``: the download guard's DNS (tests inject their own)."""
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    gradcam, twin_metadata = await asyncio.to_thread(_load_gradcam, settings, settings.checkpoint)
    model = ModelInfo.resolve(settings.model_metadata, twin_metadata)
    storage = build_storage(
        cloudinary_url=settings.cloudinary_url.get_secret_value()
        if settings.use_cloudinary and settings.cloudinary_url
        else None,
        local_dir=settings.media_dir,
        public_base_url=settings.public_base_url,
        large_threshold_bytes=settings.cloudinary_large_threshold_bytes,
        chunk_size=settings.cloudinary_chunk_size,
        folder=settings.cloudinary_folder,
        retries=settings.cloudinary_retries,
        backoff_s=settings.cloudinary_backoff_s,
    )
    triton = TritonService(settings.triton_grpc_url, settings.triton_timeout_s)
    http = build_download_client(
        settings.allowed_hosts,
        settings.connect_timeout_s,
        settings.download_timeout_s,
        resolver=resolver,
        only_listed=settings.download_allowlist_only,
    )
    downloader = Downloader(
        http,
        tmp_dir=settings.tmp_dir,
        max_bytes=settings.max_download_bytes,
        max_redirects=settings.max_redirects,
        total_timeout_s=settings.download_timeout_s,
    )
    pipeline = Pipeline(
        settings=settings, triton=triton, gradcam=gradcam, storage=storage, metrics=metrics, model=model
    )
    admission = Admission(
        settings.max_concurrent_predictions, settings.max_queued_predictions, settings.queue_timeout_s, metrics
    )
    access = AccessControl(settings)
    if access.open:
        log.warning("%s. Only for a trusted loopback: GATEWAY_AUTH=keys requires API keys", access.describe())
    else:
        log.info("%s", access.describe())
    jobs = build_job_store(settings)
    await jobs.open()
    runner = JobRunner(
        settings=settings, store=jobs, pipeline=pipeline, admission=admission, downloader=downloader, http=http
    )
    log.info(
        "gateway ready: Triton %s, storage %s, model %s %s, jobs in %s",
        settings.triton_grpc_url,
        storage.name,
        model.name,
        model.version,
        jobs.name,
    )
    return Services(
        settings=settings,
        metrics=metrics,
        triton=triton,
        http=http,
        downloader=downloader,
        gradcam=gradcam,
        storage=storage,
        model=model,
        pipeline=pipeline,
        admission=admission,
        access=access,
        jobs=jobs,
        runner=runner,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    services = await build_services(app.state.settings, app.state.metrics, app.state.resolver)
    app.state.services = services
    follower = TwinFollower(services, lambda path: _load_gradcam(services.settings, path))
    task = asyncio.create_task(follower.run()) if services.settings.twin_reload_interval_s > 0 else None
    services.runner.start()
    await services.pipeline.provenance.start()  # issue 17: the C2PA reader's worker processes, warmed up
    try:
        yield
    finally:
        if task:
            task.cancel()
        await services.aclose()
        await services.pipeline.provenance.aclose()  # issue 17


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
