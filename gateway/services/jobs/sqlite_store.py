"""The default job store: one SQLite file (WAL) under the data folder, used by one gateway process.

Every operation is one short transaction (``BEGIN IMMEDIATE``) in a worker thread. When the gateway starts, jobs
left running by a previous process (it died, or was stopped mid-job) are queued again by ``open``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.services.jobs.models import RUNNING, JobRecord, JobStatus, NewJob, now
from gateway.services.jobs.store import IdempotencyConflict, JobStoreError, QueueFull

T = TypeVar("T")
log = logging.getLogger("gateway.jobs")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    stage TEXT,
    progress REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    result TEXT,
    error TEXT,
    callback_url TEXT,
    callback TEXT,
    finished_at REAL,
    worker TEXT,
    lease_until REAL,
    not_before REAL NOT NULL DEFAULT 0,
    public_id TEXT,
    idem TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, not_before, created_at);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    job_ids TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""
_RUNNING_SQL = "(" + ",".join(f"'{s}'" for s in RUNNING) + ")"


def _record(row: sqlite3.Row) -> JobRecord:
    def js(name: str) -> Any:
        return json.loads(row[name]) if row[name] is not None else None

    return JobRecord(
        id=row["id"],
        status=JobStatus(row["status"]),
        request=js("request"),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        stage=row["stage"],
        progress=row["progress"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        result=js("result"),
        error=js("error"),
        callback_url=row["callback_url"],
        callback=js("callback"),
        finished_at=row["finished_at"],
        worker=row["worker"],
        lease_until=row["lease_until"],
        not_before=row["not_before"],
        public_id=row["public_id"],
    )


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


class SqliteJobStore:
    """Jobs in ``path`` (created with its folder)."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, used by one thread at a time

    async def open(self) -> None:
        await asyncio.to_thread(self._open)
        recovered = await self._run(self._recover)
        if recovered:
            log.info("%d job(s) left running by a previous process: queued again (or failed)", recovered)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JobStoreError(f"cannot open the job database {self.path}: {exc}") from exc
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    async def ping(self) -> bool:
        try:
            await self._run(lambda db: db.execute("SELECT 1").fetchone())
        except JobStoreError:
            return False
        return True

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._locked, fn)

    def _locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._db is None:
                raise JobStoreError("the job database is closed")
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    value = fn(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return value
            except sqlite3.Error as exc:
                raise JobStoreError(f"job database error: {exc}") from exc

    # --- creating and reading --------------------------------------------------------------------------------

    async def create(
        self,
        jobs: list[NewJob],
        *,
        max_attempts: int,
        max_queued: int,
        idempotency_key: str | None = None,
        request_fingerprint: str = "",
    ) -> tuple[list[str], bool]:
        def tx(db: sqlite3.Connection) -> tuple[list[str], bool]:
            if idempotency_key is not None:
                row = db.execute("SELECT * FROM idempotency WHERE key = ?", (idempotency_key,)).fetchone()
                if row is not None:
                    if row["fingerprint"] != request_fingerprint:
                        raise IdempotencyConflict(idempotency_key)
                    return list(json.loads(row["job_ids"])), False
            queued = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
            if queued + len(jobs) > max_queued:
                raise QueueFull(queued)
            t = now()
            db.executemany(
                "INSERT INTO jobs (id, status, request, created_at, updated_at, max_attempts, callback_url, idem)"
                " VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)",
                [(j.id, json.dumps(j.request), t, t, max_attempts, j.callback_url, idempotency_key) for j in jobs],
            )
            ids = [j.id for j in jobs]
            if idempotency_key is not None:
                db.execute(
                    "INSERT INTO idempotency (key, fingerprint, job_ids, created_at) VALUES (?, ?, ?, ?)",
                    (idempotency_key, request_fingerprint, json.dumps(ids), t),
                )
            return ids, True

        return await self._run(tx)

    async def get(self, job_id: str) -> JobRecord | None:
        row = await self._run(lambda db: db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
        return _record(row) if row is not None else None

    # --- the claim protocol ----------------------------------------------------------------------------------

    async def claim(self, worker: str, lease_s: float) -> JobRecord | None:
        def tx(db: sqlite3.Connection) -> JobRecord | None:
            t = now()
            row = db.execute(
                "SELECT id FROM jobs WHERE status = 'queued' AND not_before <= ? ORDER BY created_at, rowid LIMIT 1",
                (t,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'downloading', stage = 'download', progress = 0.05, attempts = attempts + 1,"
                " worker = ?, lease_until = ?, updated_at = ? WHERE id = ?",
                (worker, t + lease_s, t, row["id"]),
            )
            return _record(db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

        return await self._run(tx)

    def _held(self, db: sqlite3.Connection, job_id: str, worker: str) -> sqlite3.Row | None:
        return db.execute(
            f"SELECT * FROM jobs WHERE id = ? AND worker = ? AND status IN {_RUNNING_SQL}", (job_id, worker)
        ).fetchone()

    async def heartbeat(
        self, job_id: str, worker: str, lease_s: float, status: JobStatus, stage: str | None, progress: float
    ) -> bool:
        def tx(db: sqlite3.Connection) -> bool:
            if self._held(db, job_id, worker) is None:
                return False
            t = now()
            db.execute(
                "UPDATE jobs SET status = ?, stage = ?, progress = ?, lease_until = ?, updated_at = ? WHERE id = ?",
                (status.value, stage, progress, t + lease_s, t, job_id),
            )
            return True

        return await self._run(tx)

    async def finish(
        self,
        job_id: str,
        worker: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        public_id: str | None = None,
    ) -> bool:
        def tx(db: sqlite3.Connection) -> bool:
            if self._held(db, job_id, worker) is None:
                return False
            t = now()
            status = JobStatus.DONE if error is None else JobStatus.FAILED
            db.execute(
                "UPDATE jobs SET status = ?, progress = ?, result = ?, error = ?, public_id = ?, finished_at = ?,"
                " updated_at = ?, lease_until = NULL WHERE id = ?",
                (status.value, 1.0, _dump(result), _dump(error), public_id, t, t, job_id),
            )
            return True

        return await self._run(tx)

    async def retry_later(self, job_id: str, worker: str, error: dict[str, Any], delay_s: float) -> bool:
        def tx(db: sqlite3.Connection) -> bool:
            row = self._held(db, job_id, worker)
            if row is None:
                return False
            self._requeue_or_fail(db, row, error, delay_s)
            return True

        return await self._run(tx)

    @staticmethod
    def _requeue_or_fail(db: sqlite3.Connection, row: sqlite3.Row, error: dict[str, Any], delay_s: float) -> None:
        t = now()
        if row["attempts"] >= row["max_attempts"]:
            db.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, updated_at = ?, lease_until = NULL"
                " WHERE id = ?",
                (json.dumps(error), t, t, row["id"]),
            )
        else:
            db.execute(
                "UPDATE jobs SET status = 'queued', stage = NULL, progress = 0, error = ?, worker = NULL,"
                " lease_until = NULL, not_before = ?, updated_at = ? WHERE id = ?",
                (json.dumps(error), t + delay_s, t, row["id"]),
            )

    async def release(self, job_id: str, worker: str) -> None:
        def tx(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET status = 'queued', stage = NULL, progress = 0, attempts = MAX(attempts - 1, 0),"
                f" worker = NULL, lease_until = NULL, updated_at = ? WHERE id = ? AND worker = ? AND status IN"
                f" {_RUNNING_SQL}",
                (now(), job_id, worker),
            )

        await self._run(tx)

    def _recover(self, db: sqlite3.Connection) -> int:
        """Every running job: this file has one process, so a running job at start was left by a dead one."""
        rows = db.execute(f"SELECT * FROM jobs WHERE status IN {_RUNNING_SQL}").fetchall()
        for row in rows:
            error = {"type": "worker_lost", "message": "the gateway stopped while running the job"}
            self._requeue_or_fail(db, row, error, 0.0)
        return len(rows)

    async def requeue_expired(self, error: dict[str, Any]) -> list[str]:
        def tx(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE status IN {_RUNNING_SQL} AND lease_until < ?", (now(),)
            ).fetchall()
            for row in rows:
                self._requeue_or_fail(db, row, error, 0.0)
            return [row["id"] for row in rows]

        return await self._run(tx)

    # --- callbacks and retention -----------------------------------------------------------------------------

    async def set_callback(self, job_id: str, callback: dict[str, Any]) -> None:
        await self._run(
            lambda db: db.execute("UPDATE jobs SET callback = ? WHERE id = ?", (json.dumps(callback), job_id))
        )

    async def finished_before(self, cutoff: float, limit: int) -> list[JobRecord]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT * FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? ORDER BY finished_at LIMIT ?",
                (cutoff, limit),
            ).fetchall()
        )
        return [_record(r) for r in rows]

    async def delete(self, job_ids: list[str]) -> None:
        if not job_ids:
            return

        def tx(db: sqlite3.Connection) -> None:
            marks = ",".join("?" * len(job_ids))
            # An idempotency entry goes with its jobs (a later request with the key makes new ones).
            db.execute(f"DELETE FROM idempotency WHERE key IN (SELECT idem FROM jobs WHERE id IN ({marks}))", job_ids)
            db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", job_ids)

        await self._run(tx)
