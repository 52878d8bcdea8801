"""What a job store does (``JobStore``), and its errors. Two implementations: ``SqliteJobStore`` (one gateway,
the default) and ``RedisJobStore`` (several replicas sharing work).

The claim protocol: a worker ``claim``s the oldest due queued job, which gets a lease (``lease_until``) and the
worker's id; the worker extends the lease with ``heartbeat`` while it runs the job, and ends it with ``finish``,
``retry_later`` or ``release``. Each of those only acts while the caller still holds the lease, so a job is
finished by at most one worker. A lease that expired (the worker died, or lost the store for too long) is found by
``requeue_expired``: the job is queued again, or failed once ``max_attempts`` claims were made.
"""

from __future__ import annotations

from typing import Any, Protocol

from gateway.services.jobs.models import JobRecord, JobStatus, NewJob


class JobStoreError(Exception):
    """The store cannot be reached or failed."""


class QueueFull(Exception):
    """``max_queued`` jobs are already waiting."""


class IdempotencyConflict(Exception):
    """An Idempotency-Key was reused with another request body."""


class JobStore(Protocol):
    name: str

    async def open(self) -> None:
        """Connect (create the schema); a store that cannot be reached raises JobStoreError."""

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """Whether the store answers (health)."""

    async def create(
        self,
        jobs: list[NewJob],
        *,
        max_attempts: int,
        max_queued: int,
        idempotency_key: str | None = None,
        request_fingerprint: str = "",
    ) -> tuple[list[str], bool]:
        """Queue ``jobs``; with an idempotency key already used, the ids of the jobs made then and ``False``."""

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def claim(self, worker: str, lease_s: float) -> JobRecord | None:
        """The oldest due queued job, now ``downloading`` under ``worker``'s lease (attempts + 1); None if none."""

    async def heartbeat(
        self, job_id: str, worker: str, lease_s: float, status: JobStatus, stage: str | None, progress: float
    ) -> bool:
        """Extend the lease and record the stage; False when ``worker`` no longer holds the job."""

    async def finish(
        self,
        job_id: str,
        worker: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        public_id: str | None = None,
    ) -> bool:
        """``done`` with ``result``, or ``failed`` with ``error``; False when ``worker`` no longer holds the job."""

    async def retry_later(self, job_id: str, worker: str, error: dict[str, Any], delay_s: float) -> bool:
        """Queue again after ``delay_s`` (or ``failed`` when no attempt is left); False when not held."""

    async def release(self, job_id: str, worker: str) -> None:
        """Give the job back (shutdown): queued again, this attempt not counted."""

    async def requeue_expired(self, error: dict[str, Any]) -> list[str]:
        """Jobs whose lease expired: queued again, or ``failed`` with ``error`` when no attempt is left."""

    async def set_callback(self, job_id: str, callback: dict[str, Any]) -> None: ...

    async def finished_before(self, cutoff: float, limit: int) -> list[JobRecord]:
        """Finished jobs older than ``cutoff`` (for retention)."""

    async def delete(self, job_ids: list[str]) -> None: ...
