"""The long-lived services of one gateway app (``Services``), built once in the lifespan by ``build_services`` and
closed on shutdown: the Triton gRPC client, the download HTTP client, the PyTorch twin with its Grad-CAM engine,
the storage, the prediction slots and pipeline, access control and the job store with its workers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deepfake_core.checkpoint import checkpoint_digest, load_or_untrained
from gateway.core.settings import Settings
from gateway.services.access.control import AccessControl
from gateway.services.inference.gradcam import GradCamEngine
from gateway.services.inference.triton import TritonService
from gateway.services.intake.download import Downloader
from gateway.services.intake.temp_files import TmpDirLock, claim_tmp_dir
from gateway.services.intake.url_guard import Resolver, build_download_client, system_resolver
from gateway.services.jobs.build import build_job_store
from gateway.services.jobs.store import JobStore
from gateway.services.jobs.worker import JobRunner
from gateway.services.metrics import Metrics
from gateway.services.prediction.admission import Admission
from gateway.services.prediction.model_info import ModelInfo
from gateway.services.prediction.pipeline import Pipeline
from gateway.services.prediction.predictor import Predictor
from gateway.services.prediction.served_model import ModelState, ServedModel
from gateway.services.storage import Storage, build_storage

log = logging.getLogger("gateway")


@dataclass
class Services:
    """Everything built once per app in the lifespan. The Grad-CAM engine and the model info live in ``served``
    only (the twin follower swaps its state)."""

    settings: Settings
    metrics: Metrics
    triton: TritonService
    http: httpx.AsyncClient
    storage: Storage
    served: ServedModel
    pipeline: Pipeline
    predictor: Predictor
    access: AccessControl
    jobs: JobStore
    runner: JobRunner
    tmp_lock: TmpDirLock

    @property
    def gradcam(self) -> GradCamEngine:
        return self.served.gradcam

    @property
    def model(self) -> ModelInfo:
        return self.served.info

    async def aclose(self) -> None:
        await self.runner.stop()
        await self.jobs.close()
        await self.http.aclose()
        await self.triton.close()
        self.tmp_lock.close()


def load_gradcam(settings: Settings, checkpoint: Path | None) -> tuple[GradCamEngine, dict[str, Any]]:
    """The PyTorch twin (same checkpoint as the ONNX) in its Grad-CAM engine, warmed up: the first backward pass
    is several times slower than the next ones, and should not be a user's request."""
    model, metadata = load_or_untrained(checkpoint)
    engine = GradCamEngine(model, device=settings.gradcam_device)
    channels, height, width = model.feature_map_shape
    engine.compute_from_maps(
        np.zeros((settings.num_frames, channels, height, width), np.float16), np.ones(settings.num_frames, bool)
    )
    return engine, metadata


async def build_services(settings: Settings, metrics: Metrics, resolver: Resolver = system_resolver) -> Services:
    """Every long-lived client, built once. ``resolver``: the download guard's DNS (tests inject their own)."""
    tmp_lock = claim_tmp_dir(settings.tmp_dir)  # and remove what a killed gateway left there
    triton = TritonService(settings.triton_grpc_url, settings.triton_timeout_s)
    twin = settings.checkpoint
    (gradcam, twin_metadata), identity = await asyncio.gather(
        asyncio.to_thread(load_gradcam, settings, twin), triton.served_identity(timeout_s=2.0)
    )
    model = ModelInfo.resolve(identity, twin_metadata, checkpoint_digest(twin) if twin else None)
    if identity is None:
        log.warning("Triton (%s) did not tell which classifier it serves yet", settings.triton_grpc_url)
    elif not model.twin_matches:
        log.warning(
            "Triton serves checkpoint %s, the Grad-CAM twin is %s",
            model.served_sha256,
            model.twin_sha256 or "untrained",
        )
    served = ServedModel(ModelState(gradcam=gradcam, info=model, twin_metadata=twin_metadata))
    storage = _storage(settings)
    http, downloader = _downloader(settings, resolver)
    pipeline = Pipeline(settings=settings, triton=triton, served=served, storage=storage, metrics=metrics)
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
    predictor = Predictor(settings=settings, admission=admission, downloader=downloader, pipeline=pipeline)
    runner = JobRunner(settings=settings, store=jobs, predictor=predictor, storage=storage, metrics=metrics, http=http)
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
        storage=storage,
        served=served,
        pipeline=pipeline,
        predictor=predictor,
        access=access,
        jobs=jobs,
        runner=runner,
        tmp_lock=tmp_lock,
    )


def _storage(settings: Settings) -> Storage:
    return build_storage(
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


def _downloader(settings: Settings, resolver: Resolver) -> tuple[httpx.AsyncClient, Downloader]:
    """The guarded HTTP client (downloads and callbacks) and the downloader on it."""
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
    return http, downloader
