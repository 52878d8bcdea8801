"""The job worker's lease reporter against a real SQLite store: it ends with its job, however the job ends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.core.settings import Settings
from gateway.services.jobs.models import JobStatus, NewJob
from gateway.services.jobs.sqlite_store import SqliteJobStore
from gateway.services.jobs.worker import JobRunner, _Running


async def _claimed_job(tmp_path: Path) -> tuple[SqliteJobStore, JobRunner, str]:
    store = SqliteJobStore(tmp_path / "jobs.db")
    await store.open()
    job = NewJob(request={"url": "http://127.0.0.1:9/face.mp4"})
    await store.create([job], max_attempts=2, max_queued=10)
    claimed = await store.claim("w1", lease_s=30.0)
    assert claimed is not None and claimed.id == job.id
    settings = Settings(_env_file=None, job_lease_s=30.0)  # type: ignore[call-arg]
    # Only the settings and the store are used by the reporter.
    runner = JobRunner(settings=settings, store=store, predictor=None, storage=None, metrics=None, http=None)  # type: ignore[arg-type]
    return store, runner, job.id


@pytest.mark.parametrize("cancel", [True, False], ids=["cancelled", "not-cancelled"])
@pytest.mark.parametrize("spins", [0, 1, 2, 3])
def test_the_reporter_ends_with_its_job(tmp_path: Path, cancel: bool, spins: int) -> None:
    """The job's last stage is reported and the job ends a few loop turns later: the reporter stops, whether the
    worker cancels it then (as ``_run`` does) or not. It used to report forever when the cancel came while it was
    waking up (a job stuck in ``uploading`` with its lease renewed)."""

    async def scenario() -> tuple[bool, Any]:
        store, runner, job_id = await _claimed_job(tmp_path)
        finish = asyncio.Event()
        predict = asyncio.create_task(finish.wait())
        state, changed = _Running(), asyncio.Event()
        reporter = asyncio.create_task(runner._report(job_id, "w1", state, changed, predict))
        await asyncio.sleep(0.2)  # the first lease extension is written
        state.status, state.stage, state.progress = JobStatus.UPLOADING, "upload", 0.9
        changed.set()
        for _ in range(spins):
            await asyncio.sleep(0)
        finish.set()
        await predict
        if cancel:
            reporter.cancel()
        done, _ = await asyncio.wait({reporter}, timeout=5.0)
        record = await store.get(job_id)
        await store.close()
        return bool(done), record

    ended, record = asyncio.run(scenario())
    assert ended, "the reporter went on after its job ended"
    assert record is not None and record.status in (JobStatus.DOWNLOADING, JobStatus.UPLOADING), record
