"""The analysts' web page at ``/`` (static files from ``gateway/static``, under ``/static``) and
``GET /api/v1/progress/{id}``: the stage updates of a running prediction as server-sent events.

``mount_web(app)`` adds both (``create_app`` calls it). The page sends its own random ``X-Request-ID`` with the
prediction and opens the event stream with that id first; see ``gateway.services.prediction.progress``.

Both stay open with ``GATEWAY_AUTH=keys``: the page holds no secret, and a browser's ``EventSource`` cannot send an
API key header. The stream only tells stage names and times of a prediction whose random id its client chose.
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from gateway.api import API_PREFIX
from gateway.api.deps import PipelineDep
from gateway.api.stage_labels import label, timing_label
from gateway.services.prediction.stages import Stage

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"

# The page loads nothing from elsewhere; the overlay video may come from the storage's host (Cloudinary: https).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' https: http: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["web"])
progress_router = APIRouter(prefix=API_PREFIX, tags=["web"])


class _StaticFiles(StaticFiles):
    """Static files revalidated on each load (ETag), so a new release is picked up at once."""

    async def get_response(self, path: str, scope: Scope) -> Any:
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


@functools.cache
def page() -> str:
    """index.html with its stage list filled in from ``Stage`` (the page's script reads the list from there)."""
    items = []
    for stage in Stage:
        timed = timing_label(stage)
        timing = f' data-timing-label="{html.escape(timed)}"' if timed else ""
        items.append(
            f'<li data-stage="{stage.value}"{timing}><span class="stage-mark" aria-hidden="true"></span>'
            f'<span class="stage-name">{html.escape(label(stage))}</span><span class="stage-note"></span></li>'
        )
    template = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return template.replace("<!-- stages -->", "\n        ".join(items))


@router.get("/", include_in_schema=False)
async def index() -> HTMLResponse:
    """The page."""
    return HTMLResponse(page(), headers=_PAGE_HEADERS)


@progress_router.get(
    "/progress/{progress_id}",
    tags=["predict"],
    summary="Stage updates of a prediction (server-sent events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "one `stage` event per stage"}},
)
async def progress(
    pipeline: PipelineDep,
    progress_id: str = PathParam(pattern=r"^[A-Za-z0-9_-]{8,64}$", description="the X-Request-ID of the prediction"),
) -> StreamingResponse:
    """Send ``X-Request-ID: <id>`` with ``POST /api/v1/predict`` and open this stream with the same id (before or
    after). Each event is ``{"stage": ..., "elapsed": seconds}``, stages in order ``probe``, ``inference``,
    ``gradcam``, ``render``, ``upload``, then ``done`` or ``failed``; the stream ends after those. Downloading
    (or receiving the upload) comes before ``probe`` and has no event."""
    tracker = getattr(pipeline, "progress", None)
    if tracker is None:
        raise HTTPException(status_code=404, detail="progress is not available")

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for event in tracker.follow(progress_id):
            if event is None:
                yield ": keep-alive\n\n"  # a comment: also how a closed connection is noticed
            else:
                yield f"event: stage\ndata: {json.dumps(event)}\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def mount_web(app: FastAPI) -> None:
    """The page at ``/``, its files under ``/static``, and the progress stream."""
    app.include_router(router)
    app.include_router(progress_router)
    app.mount("/static", _StaticFiles(directory=STATIC_DIR), name="static")
