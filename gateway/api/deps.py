"""Dependencies of the routes: the long-lived services the lifespan built (``gateway.services.container``), the
request id, a JSON body parsed into its model (``json_body``), and ``require_access`` (the API key and rate limit
check that ``gateway.api.routes.api_router`` puts in front of every route it includes).
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from gateway.core.errors import InvalidRequest, request_id_of
from gateway.core.settings import Settings
from gateway.services.access.control import Caller
from gateway.services.container import Services
from gateway.services.inference.triton import TritonService
from gateway.services.jobs.store import JobStore
from gateway.services.jobs.worker import JobRunner
from gateway.services.metrics import Metrics
from gateway.services.prediction.model_info import ModelInfo
from gateway.services.prediction.pipeline import Pipeline
from gateway.services.prediction.predictor import Predictor
from gateway.services.storage import Storage

MAX_JSON_BYTES = 64 * 1024
M = TypeVar("M", bound=BaseModel)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics  # available before the lifespan finished, too
    return metrics


def _request_id(request: Request) -> str:
    return request_id_of(request) or "request"


def _service(path: str) -> Callable[[Request], Any]:
    """A dependency: one of the long-lived services (``Services``), e.g. ``"predictor"`` or ``"served.info"``
    (read at each request: the twin follower swaps the served model's state)."""
    get = operator.attrgetter(path)

    def dependency(request: Request) -> Any:
        return get(request.app.state.services)

    return dependency


_ServicesDep = Annotated[Services, Depends(_services)]
SettingsDep = Annotated[Settings, Depends(_service("settings"))]
PredictorDep = Annotated[Predictor, Depends(_service("predictor"))]
PipelineDep = Annotated[Pipeline, Depends(_service("pipeline"))]
ModelDep = Annotated[ModelInfo, Depends(_service("served.info"))]
TritonDep = Annotated[TritonService, Depends(_service("triton"))]
StorageDep = Annotated[Storage, Depends(_service("storage"))]
JobStoreDep = Annotated[JobStore, Depends(_service("jobs"))]
JobRunnerDep = Annotated[JobRunner, Depends(_service("runner"))]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
RequestIdDep = Annotated[str, Depends(_request_id)]


async def read_json(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``: over ``MAX_JSON_BYTES`` or invalid, 422 in the gateway's shape."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BYTES:
            raise InvalidRequest(f"the JSON body is larger than {MAX_JSON_BYTES} bytes")
        chunks.append(chunk)
    try:
        return model.model_validate_json(b"".join(chunks) or b"null")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


def json_body(model: type[M], *, multipart_hint: str | None = None) -> Callable[[Request], Awaitable[M]]:
    """A dependency: the JSON body as ``model`` (``read_json``). ``multipart_hint``: the message of the 422 that a
    multipart body gets instead of a JSON parse error."""

    async def parse(request: Request) -> M:
        if multipart_hint and request.headers.get("content-type", "").lower().startswith("multipart/"):
            raise InvalidRequest(multipart_hint)
        return await read_json(request, model)

    return parse


# auto_error=False: a missing key is answered by require_access, in the gateway's error shape.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (python -m gateway.keys)")
_bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")


async def require_access(  # async: on the event loop, so the rate buckets and the key store see one caller at a time
    request: Request,
    services: _ServicesDep,
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
