"""Asynchronous predictions: ``POST /api/v1/jobs`` (202 with job ids), ``GET /api/v1/jobs/{id}`` (status,
progress, the result) and ``GET /api/v1/jobs/{id}/events`` (status changes as server-sent events)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.api import API_PREFIX
from gateway.api.deps import JobRunnerDep, JobStoreDep, SettingsDep, json_body
from gateway.api.schemas import ErrorResponse, JobResponse, JobsAccepted, JobsRequest
from gateway.core.errors import InvalidRequest, JobsUnavailable, NotFound, Overloaded
from gateway.services.intake.url_guard import check_url
from gateway.services.jobs.models import JobRecord, NewJob, fingerprint
from gateway.services.jobs.store import IdempotencyConflict, JobStore, JobStoreError, QueueFull

router = APIRouter(prefix=API_PREFIX, tags=["jobs"])

EVENTS_MAX_S = 3600.0  # a stream ends after this; the client reconnects (EventSource does so by itself)
HEARTBEAT_S = 10.0
_MULTIPART_HINT = "jobs take video URLs (JSON); send an upload to POST /api/v1/predict/upload instead"
_JOB_ID = PathParam(min_length=1, max_length=64, description="the job's id")
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "a URL refused (scheme, credentials)",
        404: "unknown job (or removed after job_result_ttl_s)",
        422: "invalid request, too many URLs, or an Idempotency-Key reused with another body",
        429: "too many jobs queued (Retry-After)",
        503: "the job store is unavailable (Retry-After)",
    }.items()
}


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobsAccepted,
    responses={200: {"model": JobsAccepted, "description": "jobs made earlier with this Idempotency-Key"}, **_ERRORS},
    summary="Queue predictions (202 with job ids at once)",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": JobsRequest.model_json_schema()}}}
    },
)
async def create_jobs(
    req: Annotated[JobsRequest, Depends(json_body(JobsRequest, multipart_hint=_MULTIPART_HINT))],
    settings: SettingsDep,
    store: JobStoreDep,
    runner: JobRunnerDep,
    idempotency_key: str | None = Header(default=None, max_length=200, pattern=r"^[\x21-\x7e]+$"),
) -> JSONResponse:
    """JSON like ``POST /api/v1/predict`` (``url``, or ``urls`` for a batch; ``num_frames``, ``heatmap``) plus an
    optional ``callback_url``. Answers at once with one job per URL. The same ``Idempotency-Key`` header with the
    same body gives back the same jobs (200 instead of 202)."""
    s = settings
    urls = [req.url] if req.url is not None else list(req.urls or [])
    if len(urls) > s.max_job_urls:
        raise InvalidRequest(f"{len(urls)} URLs in one request; at most {s.max_job_urls}")
    for url in urls:
        check_url(url)  # the form now (400); addresses are checked when the job downloads
    if req.callback_url is not None:
        check_url(req.callback_url)
    options = req.model_dump(include={"num_frames", "heatmap"}, exclude_none=True)
    new = [NewJob(request={"url": url, **options}, callback_url=req.callback_url) for url in urls]
    try:
        ids, created = await store.create(
            new,
            max_attempts=s.job_max_attempts,
            max_queued=s.max_queued_jobs,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint(req.model_dump()),
        )
    except QueueFull:
        raise Overloaded(f"{s.max_queued_jobs} jobs are queued already; retry later", retry_after_s=30) from None
    except IdempotencyConflict:
        raise InvalidRequest("this Idempotency-Key was used with another request body") from None
    except JobStoreError as exc:
        raise _unavailable(exc) from None
    if created:
        runner.notify()
    records = [await _get(store, job_id) for job_id in ids]
    refs = [
        {"id": r.id, "status": r.status.value, "url": r.request["url"], "href": f"{API_PREFIX}/jobs/{r.id}"}
        for r in records
    ]
    headers = {"Location": refs[0]["href"]} if len(refs) == 1 else {}
    return JSONResponse({"jobs": refs}, status_code=202 if created else 200, headers=headers)


@router.get("/jobs/{job_id}", response_model=JobResponse, responses=_ERRORS, summary="A job's status and result")
async def get_job(store: JobStoreDep, job_id: str = _JOB_ID) -> dict[str, Any]:
    """``result`` holds the same body as ``POST /api/v1/predict`` once ``status`` is ``done``."""
    return (await _get(store, job_id)).public()


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "one `status` event per change"}, **_ERRORS},
    summary="A job's status changes (server-sent events)",
)
async def job_events(store: JobStoreDep, settings: SettingsDep, job_id: str = _JOB_ID) -> StreamingResponse:
    """Each ``status`` event is ``{"id", "status", "stage", "progress", "attempts", "error"?}``; the first is the
    current state, then one per change; the stream ends after ``done`` or ``failed`` (then GET the job for its
    result). The store is polled, so this works on any replica whichever runs the job."""
    first = await _get(store, job_id)  # 404 before the stream starts
    poll_s = settings.job_poll_interval_s

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        last: dict[str, Any] | None = None
        last_record: JobRecord | None = first
        deadline = time.monotonic() + EVENTS_MAX_S
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            try:
                record = await store.get(job_id)
            except JobStoreError:  # e.g. Redis restarting: keep the stream open and ask again
                record = last_record
            if record is None:  # removed (retention) while followed
                yield f"event: gone\ndata: {json.dumps({'id': job_id})}\n\n"
                return
            last_record = record
            event = record.event()
            if event != last:
                yield f"event: status\ndata: {json.dumps(event)}\n\n"
                last, quiet_since = event, time.monotonic()
            if record.status.terminal:
                return
            if time.monotonic() - quiet_since > HEARTBEAT_S:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(poll_s)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


async def _get(store: JobStore, job_id: str) -> JobRecord:
    try:
        record = await store.get(job_id)
    except JobStoreError as exc:
        raise _unavailable(exc) from None
    if record is None:
        raise NotFound(f"no job {job_id!r} (unknown, or removed after its retention time)")
    return record


def _unavailable(exc: JobStoreError) -> JobsUnavailable:
    return JobsUnavailable(f"the job store is unavailable: {exc}", retry_after_s=5)
