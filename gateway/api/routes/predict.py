"""``POST /api/v1/predict`` (JSON with a URL, or a multipart upload) and ``POST /api/v1/predict/upload``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from deepfake_core import constants as C
from gateway.api import API_PREFIX
from gateway.api.deps import PredictorDep, RequestIdDep, read_json
from gateway.api.schemas import ErrorResponse, PredictOptions, PredictRequest, PredictResponse
from gateway.services.prediction.predictor import Predictor

router = APIRouter(prefix=API_PREFIX, tags=["predict"])


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "URL refused (scheme, credentials, private or reserved address)",
        413: "video too large: bytes, frame size, duration or frame count over the limits (uploads: refused by "
        "Content-Length before reading, else while streaming)",
        422: "invalid request, or not a video that can be analysed (undecodable, image, playlist, audio only, ...)",
        424: "the download failed (error.remote_status holds the remote status)",
        429: "too many predictions in progress (Retry-After)",
        502: "Triton failed in an unexpected way",
        503: "Triton unavailable, or no prediction slot freed in time (Retry-After)",
        504: "Triton or the download timed out",
    }.items()
}
_UPLOAD_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the video"},
        "num_frames": {"type": "integer", "minimum": 1, "maximum": C.MAX_NUM_FRAMES},
        "heatmap": {"type": "boolean"},
    },
}
_JSON_SCHEMA = PredictRequest.model_json_schema()


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=_ERRORS,
    summary="Analyse a video given by URL (JSON) or uploaded (multipart)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _JSON_SCHEMA},
                "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
            },
        }
    },
)
async def predict(request: Request, predictor: PredictorDep, request_id: RequestIdDep) -> PredictResponse:
    """JSON ``{"url": ..., "num_frames"?, "heatmap"?}``: the gateway downloads the video (URL guard).
    A ``multipart/form-data`` body with a ``file`` part is treated as an upload."""
    started = time.perf_counter()
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        return await _upload(request, predictor, request_id, started)
    req = await read_json(request, PredictRequest)
    return (await predictor.from_url(req.url, req, request_id, started=started)).body


@router.post(
    "/predict/upload",
    response_model=PredictResponse,
    responses=_ERRORS,
    summary="Analyse an uploaded video (multipart: file, num_frames, heatmap)",
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _UPLOAD_SCHEMA}}}},
)
async def predict_upload(request: Request, predictor: PredictorDep, request_id: RequestIdDep) -> PredictResponse:
    """The video in a ``file`` part, streamed to disk with a size limit; options as form fields."""
    return await _upload(request, predictor, request_id, time.perf_counter())


async def _upload(request: Request, predictor: Predictor, request_id: str, started: float) -> PredictResponse:
    prediction = await predictor.from_upload(
        request.stream(),
        content_type=request.headers.get("content-type", ""),
        content_length=request.headers.get("content-length"),
        parse_options=_form_options,
        request_id=request_id,
        started=started,
    )
    return prediction.body


def _form_options(fields: Mapping[str, str]) -> PredictOptions:
    try:
        return PredictOptions.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
