"""``GET /api/v1/health`` (gateway up, Triton ready, storage writable: 200 when all are, else 503; the Grad-CAM twin
is the checkpoint Triton serves: when not, 200 ``degraded`` with both digests) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from gateway.api.deps import MetricsDep, ModelDep, StorageDep, TritonDep
from gateway.api.schemas import HealthResponse
from gateway.services.prediction.model_info import ModelInfo
from gateway.services.storage import Storage

router = APIRouter(prefix="/api/v1", tags=["service"])
metrics_router = APIRouter(tags=["service"])
log = logging.getLogger("gateway.health")


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def health(triton: TritonDep, storage: StorageDep, model: ModelDep) -> JSONResponse:
    """Each check with its verdict; the status code says whether the gateway can serve predictions (a twin that is
    not the served checkpoint degrades them: verdicts without heatmaps)."""
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
        "model": _model_check(model),
    }
    ok = triton_ok and storage_ok
    status = "unavailable" if not ok else "ok" if checks["model"]["ok"] else "degraded"
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
