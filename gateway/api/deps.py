"""Dependencies of the routes: the long-lived services the lifespan put on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request

from gateway.core.settings import Settings
from gateway.services.download import Downloader
from gateway.services.gradcam import GradCamEngine
from gateway.services.jobs.store import JobStore
from gateway.services.jobs.worker import JobRunner
from gateway.services.metrics import Metrics
from gateway.services.pipeline import Admission, ModelInfo, Pipeline
from gateway.services.storage import Storage
from gateway.services.triton import TritonService


@dataclass
class Services:
    """Everything built once per app in the lifespan."""

    settings: Settings
    metrics: Metrics
    triton: TritonService
    http: httpx.AsyncClient
    downloader: Downloader
    gradcam: GradCamEngine
    storage: Storage
    model: ModelInfo
    pipeline: Pipeline
    admission: Admission
    jobs: JobStore
    runner: JobRunner

    async def aclose(self) -> None:
        await self.runner.stop()
        await self.jobs.close()
        await self.http.aclose()
        await self.triton.close()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


def get_triton(services: ServicesDep) -> TritonService:
    return services.triton


def get_storage(services: ServicesDep) -> Storage:
    return services.storage


def get_pipeline(services: ServicesDep) -> Pipeline:
    return services.pipeline


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics  # available before the lifespan finished, too
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
TritonDep = Annotated[TritonService, Depends(get_triton)]
StorageDep = Annotated[Storage, Depends(get_storage)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
