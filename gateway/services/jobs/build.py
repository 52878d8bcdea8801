"""The job store the settings ask for: Redis when ``REDIS_URL`` is set, else the SQLite file."""

from __future__ import annotations

from gateway.core.settings import Settings
from gateway.services.jobs.sqlite_store import SqliteJobStore
from gateway.services.jobs.store import JobStore


def build_job_store(settings: Settings) -> JobStore:
    if settings.redis_url is not None:
        from gateway.services.jobs.redis_store import RedisJobStore  # redis-py only needed when used

        return RedisJobStore(settings.redis_url.get_secret_value(), prefix=settings.jobs_redis_prefix)
    return SqliteJobStore(settings.jobs_db)
