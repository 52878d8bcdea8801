"""``GET /media/{id}.mp4``: overlay videos kept by local storage (byte ranges supported, for seeking)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from gateway.api.deps import StorageDep
from gateway.api.schemas import ErrorResponse

router = APIRouter(tags=["media"])


@router.get(
    "/media/{public_id}.mp4",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "the overlay video"},
        404: {"model": ErrorResponse, "description": "unknown"},
    },
)
async def media(public_id: str, storage: StorageDep) -> FileResponse:
    """The stored file; 404 for unknown ids, invalid ids, and when storage is not local."""
    path_for = getattr(storage, "path_for", None)
    path: Path | None = path_for(public_id) if callable(path_for) else None
    if path is None:
        raise HTTPException(status_code=404, detail="no such video")
    return FileResponse(path, media_type="video/mp4", filename=f"{public_id}.mp4", content_disposition_type="inline")
