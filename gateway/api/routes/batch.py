"""``POST /api/v1/predict/batch``: a few URLs analysed while the client waits (bounded by ``max_batch_urls``);
larger batches go to ``POST /api/v1/jobs``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from gateway.api.deps import ServicesDep
from gateway.api.routes.predict import _read_small_body, _rid, predict_url
from gateway.api.schemas import BatchRequest, BatchResponse, ErrorResponse
from gateway.core.errors import GatewayError, InvalidRequest
from gateway.services.container import Services
from gateway.services.jobs.worker import error_body

router = APIRouter(prefix="/api/v1", tags=["predict"])


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    responses={422: {"model": ErrorResponse, "description": "invalid request, or more than max_batch_urls URLs"}},
    summary="Analyse a few videos by URL, synchronously",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": BatchRequest.model_json_schema()}}}
    },
)
async def predict_batch(request: Request, services: ServicesDep) -> dict[str, Any]:
    """``{"urls": [...], "num_frames"?, "heatmap"?}``: one entry per URL, in order, each with the status
    ``POST /api/v1/predict`` would have answered and its ``result`` or ``error``. The predictions share the
    gateway's prediction slots with every other request (a busy gateway answers 429 for some entries)."""
    body = await _read_small_body(request)
    try:
        req = BatchRequest.model_validate_json(body or b"null")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
    limit = services.settings.max_batch_urls
    if len(req.urls) > limit:
        raise InvalidRequest(f"{len(req.urls)} URLs in one batch; at most {limit} (use POST /api/v1/jobs for more)")
    rid = _rid(request)
    items = await asyncio.gather(*(_one(services, req, url, f"{rid}-{i}") for i, url in enumerate(req.urls)))
    return {"results": items}


async def _one(services: Services, req: BatchRequest, url: str, request_id: str) -> dict[str, Any]:
    try:
        result = await predict_url(services, url, req, request_id, time.perf_counter())
    except GatewayError as exc:
        error = error_body(exc)
        return {"url": url, "status": error.pop("status_code"), "error": error}
    return {"url": url, "status": 200, "result": result}
