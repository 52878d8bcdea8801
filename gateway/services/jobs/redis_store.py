"""The job store of several gateway replicas: Redis (redis-py asyncio), one hash per job plus a queue.

Keys (``prefix`` first): ``job:<id>`` a hash of the record's fields (JSON for the dicts; a field that is None is
absent); ``queue`` a list of queued job ids (oldest first); ``delayed`` a sorted set of jobs waiting for a retry
(score: when); ``leases`` a sorted set of running jobs (score: lease end); ``finished`` a sorted set of ended jobs
(score: when, for retention); ``idem:<key>`` the jobs an Idempotency-Key made.

Every change is one Lua script, so it is atomic: ``claim`` pops a job and leases it in one step (exactly one worker
gets it), and ``heartbeat``/``finish``/``retry_later``/``release`` act only while the caller holds the lease.
Redis persistence (AOF or RDB) is the server's configuration; with ``appendonly yes`` jobs survive a restart.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.services.jobs.models import JobRecord, JobStatus, NewJob, now
from gateway.services.jobs.store import IdempotencyConflict, JobStoreError, QueueFull

T = TypeVar("T")
Args = list[str | int | float]

_HELD = """
local function held(key, worker)
  local v = redis.call('HMGET', key, 'worker', 'status')
  return v[1] == worker and v[2] ~= false and v[2] ~= 'queued' and v[2] ~= 'done' and v[2] ~= 'failed'
end
"""
# ARGV of requeue_or_fail's callers: the error JSON and the delay; the job goes back to the queue or fails.
_REQUEUE_OR_FAIL = """
local function requeue_or_fail(id, key, t, err, delay, queue, delayed, leases, finished)
  redis.call('ZREM', leases, id)
  local attempts = tonumber(redis.call('HGET', key, 'attempts') or '0')
  local max_attempts = tonumber(redis.call('HGET', key, 'max_attempts') or '1')
  if attempts >= max_attempts then
    redis.call('HSET', key, 'status', 'failed', 'error', err, 'finished_at', t, 'updated_at', t, 'progress', '1')
    redis.call('HDEL', key, 'lease_until')
    redis.call('ZADD', finished, t, id)
  else
    redis.call('HSET', key, 'status', 'queued', 'progress', '0', 'error', err, 'updated_at', t,
               'not_before', tostring(t + delay))
    redis.call('HDEL', key, 'stage', 'worker', 'lease_until')
    if delay > 0 then redis.call('ZADD', delayed, t + delay, id) else redis.call('RPUSH', queue, id) end
  end
end
"""
# KEYS: queue, delayed, idem key or ''. ARGV: prefix, now, max_queued, max_attempts, idem value, n, then
# (id, request, callback_url or '') per job.
_CREATE = """
if KEYS[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {'existing', existing} end
end
local n = tonumber(ARGV[6])
local queued = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
if queued + n > tonumber(ARGV[3]) then return {'full', tostring(queued)} end
for i = 0, n - 1 do
  local id, request, callback = ARGV[7 + 3 * i], ARGV[8 + 3 * i], ARGV[9 + 3 * i]
  local key = ARGV[1] .. 'job:' .. id
  redis.call('HSET', key, 'id', id, 'status', 'queued', 'request', request, 'created_at', ARGV[2],
             'updated_at', ARGV[2], 'progress', '0', 'attempts', '0', 'max_attempts', ARGV[4], 'not_before', '0')
  if callback ~= '' then redis.call('HSET', key, 'callback_url', callback) end
  if KEYS[3] ~= '' then redis.call('HSET', key, 'idem', KEYS[3]) end
  redis.call('RPUSH', KEYS[1], id)
end
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[5]) end
return {'created', ''}
"""
# KEYS: queue, delayed, leases. ARGV: prefix, now, lease end, worker.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('RPUSH', KEYS[1], id)
end
while true do
  local id = redis.call('LPOP', KEYS[1])
  if not id then return false end
  local key = ARGV[1] .. 'job:' .. id
  if redis.call('HGET', key, 'status') == 'queued' then
    redis.call('HSET', key, 'status', 'downloading', 'stage', 'download', 'progress', '0.05', 'worker', ARGV[4],
               'lease_until', ARGV[3], 'updated_at', ARGV[2])
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('ZADD', KEYS[3], ARGV[3], id)
    return id
  end
end
"""
# KEYS: job, leases. ARGV: id, worker, lease end, now, status, stage, progress.
_HEARTBEAT = (
    _HELD
    + """
if not held(KEYS[1], ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[3], 'updated_at', ARGV[4], 'status', ARGV[5], 'stage', ARGV[6],
           'progress', ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""
)
# KEYS: job, leases, finished. ARGV: id, worker, now, status, result, error, public_id ('' for none).
_FINISH = (
    _HELD
    + """
if not held(KEYS[1], ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'progress', '1', 'finished_at', ARGV[3], 'updated_at', ARGV[3])
for i, field in ipairs({'result', 'error', 'public_id'}) do
  if ARGV[4 + i] ~= '' then redis.call('HSET', KEYS[1], field, ARGV[4 + i]) end
end
redis.call('HDEL', KEYS[1], 'lease_until')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
"""
)
# KEYS: job, queue, delayed, leases, finished. ARGV: id, worker, now, error, delay.
_RETRY_LATER = (
    _HELD
    + _REQUEUE_OR_FAIL
    + """
if not held(KEYS[1], ARGV[2]) then return 0 end
requeue_or_fail(ARGV[1], KEYS[1], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return 1
"""
)
# KEYS: job, queue, leases. ARGV: id, worker, now.
_RELEASE = (
    _HELD
    + """
if not held(KEYS[1], ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'progress', '0', 'updated_at', ARGV[3])
if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') > 0 then redis.call('HINCRBY', KEYS[1], 'attempts', -1) end
redis.call('HDEL', KEYS[1], 'stage', 'worker', 'lease_until')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"""
)
# KEYS: queue, delayed, leases, finished. ARGV: prefix, now, error.
_REQUEUE_EXPIRED = (
    _REQUEUE_OR_FAIL
    + """
local t = tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', t)
for _, id in ipairs(expired) do
  local key = ARGV[1] .. 'job:' .. id
  local status = redis.call('HGET', key, 'status')
  if status and status ~= 'queued' and status ~= 'done' and status ~= 'failed' then
    requeue_or_fail(id, key, t, ARGV[3], 0, KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  else
    redis.call('ZREM', KEYS[3], id)
  end
end
return expired
"""
)


def _record(h: dict[str, str]) -> JobRecord:
    def js(name: str) -> Any:
        return json.loads(h[name]) if h.get(name) else None

    def num(name: str) -> float | None:
        return float(h[name]) if h.get(name) else None

    return JobRecord(
        id=h["id"],
        status=JobStatus(h["status"]),
        request=js("request") or {},
        created_at=float(h["created_at"]),
        updated_at=float(h["updated_at"]),
        stage=h.get("stage") or None,
        progress=float(h.get("progress") or 0),
        attempts=int(h.get("attempts") or 0),
        max_attempts=int(h.get("max_attempts") or 1),
        result=js("result"),
        error=js("error"),
        callback_url=h.get("callback_url") or None,
        callback=js("callback"),
        finished_at=num("finished_at"),
        worker=h.get("worker") or None,
        lease_until=num("lease_until"),
        not_before=float(h.get("not_before") or 0),
        public_id=h.get("public_id") or None,
    )


class RedisJobStore:
    """Jobs in the Redis at ``url``, under ``prefix``."""

    name = "redis"

    def __init__(self, url: str, prefix: str = "gateway:jobs:") -> None:
        self.prefix = prefix
        # Retried on connection errors: after a Redis restart every pooled connection fails once before it
        # reconnects. A script whose reply was lost may run twice; each is safe to repeat (a claim whose answer is
        # lost leaves a lease that expires, and the job is retried).
        self._redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=5.0,
            socket_connect_timeout=5.0,
            health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self._queue, self._delayed = f"{prefix}queue", f"{prefix}delayed"
        self._leases, self._finished = f"{prefix}leases", f"{prefix}finished"
        r = self._redis
        self._create = r.register_script(_CREATE)
        self._claim = r.register_script(_CLAIM)
        self._heartbeat = r.register_script(_HEARTBEAT)
        self._finish = r.register_script(_FINISH)
        self._retry_later = r.register_script(_RETRY_LATER)
        self._release = r.register_script(_RELEASE)
        self._requeue_expired = r.register_script(_REQUEUE_EXPIRED)

    def _job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Redis errors as JobStoreError (their text names the host and port, never the password)."""
        try:
            return await fn()
        except RedisError as exc:
            raise JobStoreError(f"Redis: {exc or type(exc).__name__}") from exc
        except OSError as exc:
            raise JobStoreError(f"Redis: {exc.strerror or type(exc).__name__}") from exc

    async def open(self) -> None:
        """Nothing to create; Redis may come up later (the routes answer 503 meanwhile)."""

    async def close(self) -> None:
        await self._redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self._redis.ping))
        except JobStoreError:
            return False

    async def create(
        self,
        jobs: list[NewJob],
        *,
        max_attempts: int,
        max_queued: int,
        idempotency_key: str | None = None,
        request_fingerprint: str = "",
    ) -> tuple[list[str], bool]:
        ids = [j.id for j in jobs]
        idem = f"{self.prefix}idem:{idempotency_key}" if idempotency_key is not None else ""
        value = json.dumps({"fingerprint": request_fingerprint, "ids": ids})
        args: Args = [self.prefix, now(), max_queued, max_attempts, value, len(jobs)]
        for j in jobs:
            args += [j.id, json.dumps(j.request), j.callback_url or ""]
        outcome, detail = await self._call(lambda: self._create(keys=[self._queue, self._delayed, idem], args=args))
        if outcome == "full":
            raise QueueFull(int(detail))
        if outcome == "existing":
            previous = json.loads(detail)
            if previous["fingerprint"] != request_fingerprint:
                raise IdempotencyConflict(idempotency_key)
            return list(previous["ids"]), False
        return ids, True

    async def get(self, job_id: str) -> JobRecord | None:
        h = cast(dict[str, str], await self._call(lambda: self._redis.hgetall(self._job(job_id))))  # type: ignore[misc]
        return _record(h) if h else None

    async def claim(self, worker: str, lease_s: float) -> JobRecord | None:
        t = now()
        keys = [self._queue, self._delayed, self._leases]
        job_id = await self._call(lambda: self._claim(keys=keys, args=[self.prefix, t, t + lease_s, worker]))
        return await self.get(job_id) if job_id else None

    async def heartbeat(
        self, job_id: str, worker: str, lease_s: float, status: JobStatus, stage: str | None, progress: float
    ) -> bool:
        t = now()
        args: Args = [job_id, worker, t + lease_s, t, status.value, stage or "", progress]
        return bool(await self._call(lambda: self._heartbeat(keys=[self._job(job_id), self._leases], args=args)))

    async def finish(
        self,
        job_id: str,
        worker: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        public_id: str | None = None,
    ) -> bool:
        status = JobStatus.DONE if error is None else JobStatus.FAILED
        args: Args = [
            job_id,
            worker,
            now(),
            status.value,
            json.dumps(result) if result is not None else "",
            json.dumps(error) if error is not None else "",
            public_id or "",
        ]
        keys = [self._job(job_id), self._leases, self._finished]
        return bool(await self._call(lambda: self._finish(keys=keys, args=args)))

    async def retry_later(self, job_id: str, worker: str, error: dict[str, Any], delay_s: float) -> bool:
        keys = [self._job(job_id), self._queue, self._delayed, self._leases, self._finished]
        args: Args = [job_id, worker, now(), json.dumps(error), delay_s]
        return bool(await self._call(lambda: self._retry_later(keys=keys, args=args)))

    async def release(self, job_id: str, worker: str) -> None:
        keys = [self._job(job_id), self._queue, self._leases]
        await self._call(lambda: self._release(keys=keys, args=[job_id, worker, now()]))

    async def requeue_expired(self, error: dict[str, Any]) -> list[str]:
        keys = [self._queue, self._delayed, self._leases, self._finished]
        ids = await self._call(lambda: self._requeue_expired(keys=keys, args=[self.prefix, now(), json.dumps(error)]))
        return list(ids or [])

    async def set_callback(self, job_id: str, callback: dict[str, Any]) -> None:
        key = self._job(job_id)

        async def tx() -> None:
            if await self._redis.exists(key):
                await self._redis.hset(key, "callback", json.dumps(callback))  # type: ignore[misc]

        await self._call(tx)

    async def finished_before(self, cutoff: float, limit: int) -> list[JobRecord]:
        found = await self._call(lambda: self._redis.zrangebyscore(self._finished, "-inf", cutoff, start=0, num=limit))
        ids = cast(list[str], found)
        records = [await self.get(i) for i in ids]
        missing = [i for i, r in zip(ids, records, strict=True) if r is None]
        if missing:  # removed by hand: forget them
            await self._call(lambda: self._redis.zrem(self._finished, *missing))
        return [r for r in records if r is not None]

    async def delete(self, job_ids: list[str]) -> None:
        if not job_ids:
            return

        async def tx() -> None:
            idem = [await self._redis.hget(self._job(i), "idem") for i in job_ids]  # type: ignore[misc]
            keys = [self._job(i) for i in job_ids] + [k for k in idem if k]
            async with self._redis.pipeline(transaction=True) as p:
                p.delete(*keys)
                p.zrem(self._finished, *job_ids)
                await p.execute()

        await self._call(tx)
