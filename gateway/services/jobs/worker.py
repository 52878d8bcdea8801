"""The workers of one gateway: each claims a job, runs the same pipeline as ``POST /api/v1/predict`` with its
stages recorded, and finishes it; plus one maintenance task (expired leases, retention).

Failures: an error worth retrying (Triton unavailable, a timeout, a 5xx download) queues the job again after a
backoff until ``job_max_attempts`` runs were made; any other error fails it at once with the same error body as the
synchronous API. A worker that cannot reach the store keeps trying for the length of a lease; after that the lease
has expired and the job belongs to whoever claims it next. On shutdown a running job is given back (``release``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from gateway.api.schemas import PredictRequest
from gateway.core.aio import wait_event
from gateway.core.errors import (
    DownloadFailed,
    GatewayError,
    InvalidRequest,
    Overloaded,
    TritonUnavailable,
    UpstreamFailure,
    UpstreamTimeout,
    error_body,
)
from gateway.core.settings import Settings
from gateway.services.jobs.callback import deliver
from gateway.services.jobs.models import STAGE_STATUS, JobRecord, JobStatus
from gateway.services.jobs.retention import remove_expired
from gateway.services.jobs.store import JobStore, JobStoreError
from gateway.services.metrics import Metrics
from gateway.services.prediction.predictor import Predictor
from gateway.services.prediction.stages import Listener, Stage
from gateway.services.storage import Storage

log = logging.getLogger("gateway.jobs")
T = TypeVar("T")

WORKER_LOST = {"type": "worker_lost", "message": "the worker running the job stopped answering; no attempt left"}


def is_retryable(exc: BaseException) -> bool:
    """Errors that may pass: Triton down or overloaded, timeouts, a download failing on the remote's side."""
    if isinstance(exc, (TritonUnavailable, UpstreamTimeout, UpstreamFailure, Overloaded)):
        return True
    if isinstance(exc, DownloadFailed):
        return exc.remote_status is None or exc.remote_status >= 500 or exc.remote_status in (408, 429)
    return False


@dataclass
class _Running:
    """A running job's latest stage, written to the store by its reporter."""

    status: JobStatus = STAGE_STATUS[Stage.DOWNLOAD][0]
    stage: str | None = Stage.DOWNLOAD.value
    progress: float = STAGE_STATUS[Stage.DOWNLOAD][1]
    lost: bool = False


class JobRunner:
    """``job_workers`` worker tasks and the maintenance task of one app."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: JobStore,
        predictor: Predictor,
        storage: Storage,
        metrics: Metrics,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.store = store
        self.predictor = predictor
        self.storage = storage  # finished jobs' overlays are removed from it
        self.metrics = metrics
        self.http = http
        self.instance = f"{os.uname().nodename}-{os.getpid()}-{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._callbacks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        s = self.settings
        self._tasks = [asyncio.create_task(self._work(f"{self.instance}-w{n}")) for n in range(s.job_workers)]
        self._tasks.append(asyncio.create_task(self._maintain()))

    def notify(self) -> None:
        """New jobs were queued here: wake the idle workers now rather than at their next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Cancel everything; running jobs are given back to the queue."""
        tasks = [*self._tasks, *self._callbacks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # --- workers ---------------------------------------------------------------------------------------------

    async def _work(self, worker: str) -> None:
        s = self.settings
        while True:
            try:
                record = await self.store.claim(worker, s.job_lease_s)
            except JobStoreError as exc:
                log.warning("worker %s cannot claim jobs: %s", worker, exc)
                await asyncio.sleep(max(s.job_poll_interval_s, 1.0))
                continue
            if record is None:
                self._wake.clear()
                await wait_event(self._wake, s.job_poll_interval_s)
                continue
            try:
                await self._run(record, worker)
            except JobStoreError as exc:  # the store was away longer than a lease: the lease decides
                log.warning("worker %s could not record job %s: %s", worker, record.id, exc)
            except Exception:
                log.exception("worker %s: job %s went wrong", worker, record.id)

    async def _run(self, record: JobRecord, worker: str) -> None:
        s = self.settings
        state = _Running()
        changed = asyncio.Event()

        def on_stage(stage: Stage) -> None:
            state.status, state.progress = STAGE_STATUS[stage]
            state.stage = stage.value
            changed.set()

        log.info("worker %s: job %s, attempt %d/%d", worker, record.id, record.attempts, record.max_attempts)
        predict = asyncio.create_task(self._predict(record, on_stage))
        reporter = asyncio.create_task(self._report(record.id, worker, state, changed, predict))
        try:
            try:
                result, public_id = await predict
            finally:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
        except asyncio.CancelledError:
            if state.lost:  # another worker has the job now: write nothing
                log.warning("worker %s lost the lease of job %s; abandoned", worker, record.id)
                return
            with contextlib.suppress(JobStoreError):  # shutdown: give the job back
                await asyncio.shield(self.store.release(record.id, worker))
            raise
        except Exception as exc:
            body = error_body(exc)
            if is_retryable(exc) and record.attempts < record.max_attempts:
                delay = s.job_retry_backoff_s * 2 ** (record.attempts - 1)
                log.info("job %s: %s; retried in %.1f s", record.id, body["message"], delay)
                self.metrics.jobs.labels("retried").inc()
                await self._persist(lambda: self.store.retry_later(record.id, worker, body, delay))
                return
            if not isinstance(exc, GatewayError):
                log.exception("job %s failed unexpectedly", record.id)
            await self._finish(record, worker, error=body)
            return
        await self._finish(record, worker, result=result, public_id=public_id)

    async def _predict(self, record: JobRecord, on_stage: Listener) -> tuple[dict[str, Any], str]:
        """The same prediction as ``POST /api/v1/predict``, in the same slots (waiting for one as long as it takes)."""
        try:  # validated again: a stored request is data from outside this process (another version, the store)
            request = PredictRequest.model_validate(record.request)
        except ValidationError as exc:
            raise InvalidRequest(f"the stored job request is not valid: {exc.errors()[0]['msg']}") from None
        done = await self.predictor.from_url(request.url, request, record.id, wait=True, on_stage=on_stage)
        return done.body.model_dump(mode="json"), done.public_id

    async def _report(
        self, job_id: str, worker: str, state: _Running, changed: asyncio.Event, predict: asyncio.Task[Any]
    ) -> None:
        """Write stage changes, and extend the lease every third of it, until ``predict`` ends; cancel the job when
        the lease is lost."""
        s = self.settings
        predict.add_done_callback(lambda _: changed.set())  # so this ends with the job, cancelled or not
        while True:
            await wait_event(changed, s.job_lease_s / 3)
            if predict.done():
                return
            changed.clear()
            try:
                held = await self.store.heartbeat(
                    job_id, worker, s.job_lease_s, state.status, state.stage, state.progress
                )
            except JobStoreError as exc:
                log.warning("job %s: cannot extend the lease: %s", job_id, exc)
                await asyncio.sleep(1.0)
                continue
            if not held:
                state.lost = True
                predict.cancel()
                return

    async def _finish(
        self,
        record: JobRecord,
        worker: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        public_id: str | None = None,
    ) -> None:
        kept = public_id if result is not None and result.get("output_url") else None
        held = await self._persist(
            lambda: self.store.finish(record.id, worker, result=result, error=error, public_id=kept)
        )
        if not held:
            log.warning("job %s finished, but its lease had passed to another worker; result dropped", record.id)
            return
        log.info("job %s %s", record.id, "done" if error is None else f"failed: {error['message']}")
        self.metrics.jobs.labels("done" if error is None else "failed").inc()
        if record.callback_url:
            task = asyncio.create_task(self._callback(record.id, record.callback_url))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)

    async def _callback(self, job_id: str, url: str) -> None:
        try:
            await self._deliver(job_id, url)
        except JobStoreError as exc:
            log.warning("job %s: callback not recorded: %s", job_id, exc)
        except Exception:
            log.exception("job %s: callback failed", job_id)

    async def _deliver(self, job_id: str, url: str) -> None:
        s = self.settings
        record = await self._persist(lambda: self.store.get(job_id))
        if record is None:
            return
        outcome = await deliver(
            self.http,
            url,
            record.public(),
            attempts=s.callback_retries,
            backoff_s=s.callback_backoff_s,
            timeout_s=s.callback_timeout_s,
        )
        await self._persist(lambda: self.store.set_callback(job_id, outcome))

    async def _persist(self, op: Callable[[], Awaitable[T]]) -> T:
        """``op`` retried while the store is unreachable, for up to a lease (then the lease decides)."""
        deadline = time.monotonic() + self.settings.job_lease_s
        delay = 0.2
        while True:
            try:
                return await op()
            except JobStoreError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("job store unavailable (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- maintenance -----------------------------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Requeue jobs whose lease expired (every few seconds) and remove old results (``retention_interval_s``)."""
        s = self.settings
        interval = min(max(s.job_lease_s / 4, 0.2), 5.0)
        next_retention = 0.0
        while True:
            try:
                requeued = await self.store.requeue_expired(WORKER_LOST)
                if requeued:
                    log.warning("lease expired for job(s) %s: queued again or failed", ", ".join(requeued))
                    self.notify()
                if time.monotonic() >= next_retention:
                    await remove_expired(self.store, self.storage, s.job_result_ttl_s)
                    next_retention = time.monotonic() + s.retention_interval_s
            except JobStoreError as exc:
                log.warning("job maintenance: %s", exc)
            except Exception:
                log.exception("job maintenance failed")
            await asyncio.sleep(interval)
