"""``GET /api/v1/health`` (gateway up, Triton ready, storage writable: 200 when all are, else 503) and
``GET /metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from gateway.api.deps import MetricsDep, StorageDep, TritonDep
from gateway.api.schemas import HealthResponse
from gateway.services.storage import Storage

router = APIRouter(prefix="/api/v1", tags=["service"])
metrics_router = APIRouter(tags=["service"])
log = logging.getLogger("gateway.health")


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def health(triton: TritonDep, storage: StorageDep) -> JSONResponse:
    """Each check with its verdict; the status code says whether the gateway can serve predictions."""
    triton_ok, storage_ok = await asyncio.gather(triton.ready(), _storage_ok(storage))
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
    }
    ok = triton_ok and storage_ok
    body = HealthResponse.model_validate({"status": "ok" if ok else "unavailable", "checks": checks})
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


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
