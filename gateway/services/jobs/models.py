"""A job's record and status, shared by the stores, the workers and the routes."""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.services.prediction.stages import Stage


class JobStatus(enum.StrEnum):
    """Where a job is. ``queued`` also covers a job waiting for its retry."""

    QUEUED = "queued"
    DOWNLOADING = "downloading"
    ANALYSING = "analysing"
    RENDERING = "rendering"
    UPLOADING = "uploading"
    DONE = "done"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED)

    @property
    def running(self) -> bool:
        return not self.terminal and self is not JobStatus.QUEUED


RUNNING = tuple(s.value for s in JobStatus if s.running)

# The prediction's stages as job statuses, with the progress reached when a stage starts.
STAGE_STATUS: dict[Stage, tuple[JobStatus, float]] = {
    Stage.DOWNLOAD: (JobStatus.DOWNLOADING, 0.05),
    Stage.PROBE: (JobStatus.ANALYSING, 0.2),
    Stage.INFERENCE: (JobStatus.ANALYSING, 0.3),
    Stage.GRADCAM: (JobStatus.ANALYSING, 0.6),
    Stage.RENDER: (JobStatus.RENDERING, 0.7),
    Stage.UPLOAD: (JobStatus.UPLOADING, 0.9),
}


def new_job_id() -> str:
    """A random, unguessable job id (also the prediction's request id)."""
    return secrets.token_hex(16)


def fingerprint(body: dict[str, Any]) -> str:
    """A digest of a request body, to tell a retried request from another one reusing an Idempotency-Key."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class NewJob:
    """What a client asked for: one video and the prediction options."""

    request: dict[str, Any]  # {"url", "num_frames", "heatmap"}: the PredictRequest fields, unset ones absent
    callback_url: str | None = None
    id: str = field(default_factory=new_job_id)


@dataclass
class JobRecord:
    """One job as stored."""

    id: str
    status: JobStatus
    request: dict[str, Any]
    created_at: float
    updated_at: float
    stage: str | None = None  # the pipeline's finer stage (probe, inference, ...)
    progress: float = 0.0
    attempts: int = 0
    max_attempts: int = 1
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    callback_url: str | None = None
    callback: dict[str, Any] | None = None  # {"status": delivered|failed, "attempts", "error"?}
    finished_at: float | None = None
    worker: str | None = None
    lease_until: float | None = None
    not_before: float = 0.0  # a retry waits until then
    public_id: str | None = None  # the stored overlay video's id (removed with the job)

    def public(self) -> dict[str, Any]:
        """The ``GET /api/v1/jobs/{id}`` body."""
        return {
            "id": self.id,
            "status": self.status.value,
            "stage": self.stage,
            "progress": round(self.progress, 3),
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "url": self.request.get("url"),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "error": self.error,
            "callback": self.callback,
        }

    def event(self) -> dict[str, Any]:
        """What a stage-change event carries (no result: that is in ``GET /api/v1/jobs/{id}``)."""
        body = self.public()
        event = {k: body[k] for k in ("id", "status", "stage", "progress", "attempts")}
        return {**event, "error": self.error} if self.error else event


def now() -> float:
    return time.time()
