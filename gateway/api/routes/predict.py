"""``POST /api/v1/predict`` (JSON with a URL, or a multipart upload) and ``POST /api/v1/predict/upload``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from deepfake_core import constants as C
from gateway.api.deps import ServicesDep
from gateway.api.schemas import ErrorResponse, PredictOptions, PredictRequest, PredictResponse
from gateway.core.errors import InvalidRequest, TooLarge, request_id_of
from gateway.services.container import Services
from gateway.services.intake.temp_files import removing
from gateway.services.intake.upload import receive_upload
from gateway.services.prediction.pipeline import PredictJob

router = APIRouter(prefix="/api/v1", tags=["predict"])

MAX_JSON_BYTES = 64 * 1024
MULTIPART_SLACK_BYTES = 64 * 1024  # boundaries, part headers and the small fields around the file

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
async def predict(request: Request, services: ServicesDep) -> dict[str, Any]:
    """JSON ``{"url": ..., "num_frames"?, "heatmap"?}``: the gateway downloads the video (SSRF-guarded).
    A ``multipart/form-data`` body with a ``file`` part is treated as an upload."""
    started = time.perf_counter()
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/"):
        return await _predict_upload(request, services, started)
    body = await _read_small_body(request)
    try:
        req = PredictRequest.model_validate_json(body or b"null")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
    return await predict_url(services, req.url, req, _rid(request), started)


async def predict_url(
    services: Services, url: str, options: PredictOptions, request_id: str, started: float
) -> dict[str, Any]:
    """One prediction slot: download ``url`` (SSRF-guarded), run the pipeline, the response body."""
    async with services.admission.slot():
        download_start = time.perf_counter()
        async with services.downloader.fetch(url, prefix=request_id) as downloaded:
            job = _job(services, downloaded.path, downloaded.size, options, request_id, started)
            job.timings["download"] = time.perf_counter() - download_start
            return await services.pipeline.run(job)


@router.post(
    "/predict/upload",
    response_model=PredictResponse,
    responses=_ERRORS,
    summary="Analyse an uploaded video (multipart: file, num_frames, heatmap)",
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _UPLOAD_SCHEMA}}}},
)
async def predict_upload(request: Request, services: ServicesDep) -> dict[str, Any]:
    """The video in a ``file`` part, streamed to disk with a size limit; options as form fields."""
    return await _predict_upload(request, services, time.perf_counter())


async def _predict_upload(request: Request, services: Services, started: float) -> dict[str, Any]:
    s = services.settings
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > s.max_upload_bytes + MULTIPART_SLACK_BYTES:
        raise TooLarge(f"the upload is {int(declared)} bytes, over the limit of {s.max_upload_bytes} bytes")
    async with services.admission.slot():
        receive_start = time.perf_counter()
        uploaded = await receive_upload(
            _capped(request.stream(), s.max_upload_bytes + MULTIPART_SLACK_BYTES, s.max_upload_bytes),
            request.headers.get("content-type", ""),
            tmp_dir=s.tmp_dir,
            max_bytes=s.max_upload_bytes,
            prefix=_rid(request),
        )
        with removing(uploaded.path):
            try:
                options = PredictOptions.model_validate(uploaded.fields)
            except ValidationError as exc:
                raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
            job = _job(services, uploaded.path, uploaded.size, options, _rid(request), started)
            job.timings["download"] = time.perf_counter() - receive_start
            return await services.pipeline.run(job)


async def _capped(chunks: AsyncIterator[bytes], cap: int, limit: int) -> AsyncIterator[bytes]:
    """The body, refused (413) once it passes ``cap`` bytes in all, with or without a Content-Length: the file part
    has its own limit, this one also bounds what the multipart parser skips (anything after the last boundary)."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise TooLarge(f"the upload is larger than the limit of {limit} bytes")
        yield chunk


async def _read_small_body(request: Request) -> bytes:
    """The JSON body, refused past MAX_JSON_BYTES."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BYTES:
            raise InvalidRequest(f"the JSON body is larger than {MAX_JSON_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _rid(request: Request) -> str:
    return request_id_of(request) or "request"


def _job(
    services: Services, path: Any, size: int, options: PredictOptions, request_id: str, started: float
) -> PredictJob:
    return PredictJob.with_defaults(
        services.settings,
        source=path,
        size=size,
        num_frames=options.num_frames,
        heatmap=options.heatmap,
        request_id=request_id,
        started=started,
    )
