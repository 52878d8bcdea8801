"""Route modules, one per concern, and how they are mounted.

``api_router`` holds the API routes that need access (an API key, or ``GATEWAY_AUTH=open``) and checks it once for
all of them: a new API router is protected by ``api_router.include_router(new.router)``. ``PUBLIC_ROUTERS`` are open
to everybody: health (for probes and load balancers), ``/metrics`` (scraped from inside the cluster) and the overlay
videos under ``/media`` (unguessable 128-bit ids, loaded by a <video> element that cannot send a key). The web page
and its progress stream are mounted by ``gateway.api.routes.web.mount_web`` (also open; see there).
"""

from fastapi import APIRouter, Depends

from gateway.api.deps import require_access
from gateway.api.routes import batch, health, info, jobs, media, predict
from gateway.api.schemas import ErrorResponse

api_router = APIRouter(
    dependencies=[Depends(require_access)],
    responses={
        401: {"model": ErrorResponse, "description": "no API key, or an unknown, wrong or revoked one"},
        429: {"model": ErrorResponse, "description": "rate limit or prediction queue full (Retry-After)"},
    },
)
api_router.include_router(predict.router)
api_router.include_router(info.router)
api_router.include_router(batch.router)
api_router.include_router(jobs.router)

PUBLIC_ROUTERS = (health.router, media.router, health.metrics_router)
ROUTERS = (api_router, *PUBLIC_ROUTERS)
