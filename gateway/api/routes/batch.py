"""``POST /api/v1/predict/batch``: a few URLs analysed while the client waits (bounded by ``max_batch_urls``);
larger batches go to ``POST /api/v1/jobs``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from gateway.api import API_PREFIX
from gateway.api.deps import PredictorDep, RequestIdDep, SettingsDep, json_body
from gateway.api.schemas import BatchItem, BatchRequest, BatchResponse, ErrorResponse
from gateway.core.errors import GatewayError, InvalidRequest, error_body
from gateway.services.prediction.predictor import Predictor

router = APIRouter(prefix=API_PREFIX, tags=["predict"])


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    responses={422: {"model": ErrorResponse, "description": "invalid request, or more than max_batch_urls URLs"}},
    summary="Analyse a few videos by URL, synchronously",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": BatchRequest.model_json_schema()}}}
    },
)
async def predict_batch(
    req: Annotated[BatchRequest, Depends(json_body(BatchRequest))],
    predictor: PredictorDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> dict[str, Any]:
    """``{"urls": [...], "num_frames"?, "heatmap"?}``: one entry per URL, in order, each with the status
    ``POST /api/v1/predict`` would have answered and its ``result`` or ``error``. The predictions share the
    gateway's prediction slots with every other request (a busy gateway answers 429 for some entries)."""
    limit = settings.max_batch_urls
    if len(req.urls) > limit:
        raise InvalidRequest(f"{len(req.urls)} URLs in one batch; at most {limit} (use POST /api/v1/jobs for more)")
    items = await asyncio.gather(*(_one(predictor, req, url, f"{request_id}-{i}") for i, url in enumerate(req.urls)))
    return {"results": items}


async def _one(predictor: Predictor, req: BatchRequest, url: str, request_id: str) -> BatchItem:
    try:
        prediction = await predictor.from_url(url, req, request_id)
    except GatewayError as exc:
        error = error_body(exc)
        return BatchItem.model_validate({"url": url, "status": error.pop("status_code"), "error": error})
    return BatchItem(url=url, status=200, result=prediction.body)
