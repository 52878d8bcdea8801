"""``GET /api/v1/health`` (gateway up, Triton ready, storage writable, job store reachable, the Grad-CAM twin the
checkpoint Triton serves) and ``GET /metrics`` (Prometheus).

Status ``ok`` when every check passes, else ``degraded``; the code is 503 when predictions cannot be served (Triton
or storage down: a readiness probe takes the pod out of rotation), 200 otherwise (a job store that is away only
stops the jobs API, which answers 503 itself meanwhile; a twin that is not the served checkpoint only turns the
heatmaps off: the checks say which, with both digests)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from gateway.api import API_PREFIX
from gateway.api.deps import JobStoreDep, MetricsDep, ModelDep, StorageDep, TritonDep
from gateway.api.schemas import HealthResponse
from gateway.services.jobs.store import JobStore
from gateway.services.prediction.model_info import ModelInfo
from gateway.services.storage import Storage

router = APIRouter(prefix=API_PREFIX, tags=["service"])
metrics_router = APIRouter(tags=["service"])
log = logging.getLogger("gateway.health")
JOBS_PING_TIMEOUT_S = 2.0


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def health(triton: TritonDep, storage: StorageDep, jobs: JobStoreDep, model: ModelDep) -> JSONResponse:
    """Each check with its verdict; the status code says whether the gateway can serve predictions."""
    triton_ok, storage_ok, jobs_ok = await asyncio.gather(triton.ready(), _storage_ok(storage), _jobs_ok(jobs))
    checks = {
        "gateway": {"ok": True, "detail": "up"},
        "triton": {
            "ok": triton_ok,
            "detail": f"{triton.url}: " + ("ready" if triton_ok else "not ready or unreachable"),
        },
        "storage": {
            "ok": storage_ok,
            "detail": f"{storage.name}: " + ("writable" if storage_ok else "not writable"),
        },
        "model": _model_check(model),
        "jobs": {"ok": jobs_ok, "detail": f"{jobs.name}: " + ("reachable" if jobs_ok else "unreachable")},
    }
    ok = triton_ok and storage_ok
    status = "ok" if ok and jobs_ok and checks["model"]["ok"] else "degraded"
    body = HealthResponse.model_validate({"status": status, "checks": checks})
    return JSONResponse(body.model_dump(exclude_unset=True), status_code=200 if ok else 503)


def _model_check(model: ModelInfo) -> dict[str, object]:
    """Whether the Grad-CAM twin is the checkpoint Triton serves (the digests, from Triton's model config and the
    twin's file)."""
    twin = model.twin_sha256 or "untrained"
    if model.served is None:
        return {
            "ok": False,
            "detail": f"Triton has not said which classifier it serves; Grad-CAM twin {twin}",
            "grad_cam_sha256": model.twin_sha256,
        }
    served = model.served_sha256 or "untrained"
    if model.twin_matches:
        detail = (
            f"Triton serves {model.version} ({served}, {model.precision}); the Grad-CAM twin is the same checkpoint"
        )
    else:
        detail = (
            f"Triton serves checkpoint {served} ({model.version}) but the Grad-CAM twin is {twin} "
            f"({model.twin_version}): heatmaps are off until they match"
        )
    return {
        "ok": model.twin_matches,
        "detail": detail,
        "served_sha256": model.served_sha256,
        "grad_cam_sha256": model.twin_sha256,
    }


async def _jobs_ok(jobs: JobStore) -> bool:
    """The store's ping, bounded (a Redis that hangs must not hang the probe)."""
    try:
        return await asyncio.wait_for(jobs.ping(), JOBS_PING_TIMEOUT_S)
    except TimeoutError:
        return False


async def _storage_ok(storage: Storage) -> bool:
    try:
        return bool(await storage.check())
    except Exception as exc:  # a health check reports, it does not fail
        log.warning("storage check failed: %s", exc)
        return False


@metrics_router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(m: MetricsDep) -> Response:
    """Request counts by route and status, latency per route and per predict stage, requests in flight."""
    return Response(m.render(), media_type=m.content_type)
