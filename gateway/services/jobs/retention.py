"""Removing finished jobs older than ``job_result_ttl_s``, with their overlay videos in local storage.

Videos stored in Cloudinary stay there (the account's own retention rules apply); only the job is removed.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.services.jobs.models import now
from gateway.services.jobs.store import JobStore
from gateway.services.storage import LocalStorage, Storage

log = logging.getLogger("gateway.jobs")


async def remove_expired(store: JobStore, storage: Storage, ttl_s: float, batch: int = 200) -> int:
    """Remove every job finished more than ``ttl_s`` ago and its local overlay file; how many were removed."""
    removed = 0
    cutoff = now() - ttl_s
    while records := await store.finished_before(cutoff, batch):
        if isinstance(storage, LocalStorage):
            paths = [storage.path_for(r.public_id) for r in records if r.public_id]
            await asyncio.to_thread(_unlink, [p for p in paths if p is not None])
        await store.delete([r.id for r in records])
        removed += len(records)
        if len(records) < batch:
            break
    if removed:
        log.info("removed %d finished job(s) older than %g s", removed, ttl_s)
    return removed


def _unlink(paths: list) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
