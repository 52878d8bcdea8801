"""Dependencies of the routes: the long-lived services the lifespan put on ``app.state``, and ``require_access``
(the API key and rate limit check that ``gateway.api.routes.api_router`` puts in front of every route it includes).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway.core.errors import request_id_of
from gateway.core.settings import Settings
from gateway.services.access.control import Caller
from gateway.services.container import Services
from gateway.services.inference.triton import TritonService
from gateway.services.metrics import Metrics
from gateway.services.prediction.pipeline import Pipeline
from gateway.services.storage import Storage


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


# auto_error=False: a missing key is answered by require_access, in the gateway's error shape.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (python -m gateway.keys)")
_bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")


async def require_access(  # async: on the event loop, so the rate buckets and the key store see one caller at a time
    request: Request,
    services: ServicesDep,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Caller:
    """The caller of an API route: a valid API key (``X-API-Key`` or ``Authorization: Bearer``) within its rate
    limit, or anyone within the per-address limit with ``GATEWAY_AUTH=open``; else 401 / 429."""
    presented = api_key or (bearer.credentials if bearer else None)
    client = request.client.host if request.client else "unknown"
    caller = services.access.admit(presented, client, request_id_of(request))
    request.state.caller = caller
    return caller


CallerDep = Annotated[Caller, Depends(require_access)]
