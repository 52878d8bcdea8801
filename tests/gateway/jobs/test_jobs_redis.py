"""Jobs in Redis shared by several gateway replicas: a real redis-server, real gateways, the real Triton."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter

import redis

from benchmarks.chaos_stack import RedisProcess
from gateway.services.jobs.models import NewJob
from gateway.services.jobs.redis_store import RedisJobStore
from tests.gateway.conftest import FAST, GatewayFactory, VideoServer, assert_error, tmp_files
from tests.gateway.jobs.jobs_helpers import submit, wait_job

PREFIX = "gateway:jobs:"  # the default


def test_two_replicas_run_each_job_exactly_once(
    make_gateway: GatewayFactory, redis_server: RedisProcess, video_server: VideoServer
) -> None:
    a = make_gateway(redis_url=redis_server.url)
    b = make_gateway(redis_url=redis_server.url)
    tag = secrets.token_hex(4)
    urls = [video_server.url(f"face.mp4?run={tag}-{i}") for i in range(6)]
    with a.client() as ca, b.client() as cb:
        assert ca.get("/api/v1/info").status_code == 200
        first = ca.post("/api/v1/jobs", json={"urls": urls, **FAST}, headers={"Idempotency-Key": f"k-{tag}"})
        assert first.status_code == 202, first.text
        again = cb.post("/api/v1/jobs", json={"urls": urls, **FAST}, headers={"Idempotency-Key": f"k-{tag}"})
        ids = [j["id"] for j in first.json()["jobs"]]
        assert again.status_code == 200 and [j["id"] for j in again.json()["jobs"]] == ids  # b knows a's key
        jobs = [wait_job(cb if i % 2 else ca, job_id) for i, job_id in enumerate(ids)]
    assert [j["status"] for j in jobs] == ["done"] * 6 and all(j["attempts"] == 1 for j in jobs), jobs
    downloads = Counter(s["path"] for s in video_server.seen if tag in s["path"])
    assert sorted(downloads.values()) == [1] * 6  # each video fetched once: each job ran once
    with redis.Redis.from_url(redis_server.url, decode_responses=True) as r:
        workers = {r.hget(f"{PREFIX}job:{i}", "worker").rsplit("-w", 1)[0] for i in ids}
        assert r.llen(f"{PREFIX}queue") == 0 and r.zcard(f"{PREFIX}leases") == 0
    assert len(workers) == 2, workers  # both replicas took jobs
    assert tmp_files(a) == [] and tmp_files(b) == []


def test_a_worker_dying_mid_job_leaves_it_to_be_retried(
    make_gateway: GatewayFactory, redis_server: RedisProcess, video_server: VideoServer
) -> None:
    """A worker claims two jobs and dies (its leases are never extended): once they expire, a gateway runs the one
    with an attempt left, and fails the one without."""

    async def die_holding_jobs() -> tuple[str, str]:
        store = RedisJobStore(redis_server.url)
        retried = NewJob(request={"url": video_server.url("faceless.mp4"), **FAST})
        spent = NewJob(request={"url": video_server.url("faceless.mp4"), **FAST})
        await store.create([retried], max_attempts=2, max_queued=100)
        await store.create([spent], max_attempts=1, max_queued=100)
        claimed = [await store.claim("dead-worker", lease_s=1.0) for _ in range(2)]
        assert [c.id for c in claimed if c] == [retried.id, spent.id]
        await store.close()
        return retried.id, spent.id

    retried, spent = asyncio.run(die_holding_jobs())
    gw = make_gateway(redis_url=redis_server.url, job_lease_s=4.0)
    with gw.client() as c:
        job = wait_job(c, retried)
        assert job["status"] == "done" and job["attempts"] == 2, job
        assert job["result"]["predicted_class"] == "NO_FACE"
        lost = wait_job(c, spent)
        assert lost["status"] == "failed" and lost["attempts"] == 1 and lost["error"]["type"] == "worker_lost", lost


def test_redis_restarted_mid_run(
    make_gateway: GatewayFactory, redis_server: RedisProcess, video_server: VideoServer
) -> None:
    """Redis goes away while jobs run and wait: the API answers 503 meanwhile; after the restart (same data, AOF)
    every job finishes and none is lost."""
    gw = make_gateway(redis_url=redis_server.url)
    with gw.client() as c:
        ids = submit(c, {"urls": [video_server.url("slow/2/face.mp4")] * 3, **FAST})
        wait_job(c, ids[0], until=("downloading",))
        redis_server.stop()
        assert_error(c.get(f"/api/v1/jobs/{ids[0]}"), 503, "jobs_unavailable")
        down = c.post("/api/v1/jobs", json={"url": video_server.url("face.mp4")})
        assert_error(down, 503, "jobs_unavailable")
        assert int(down.headers["retry-after"]) > 0
        time.sleep(3)  # the running job's download ends while Redis is down
        redis_server.start()
        jobs = [wait_job(c, i) for i in ids]
    assert [j["status"] for j in jobs] == ["done"] * 3, jobs
    assert all(j["result"]["predicted_class"] in ("REAL", "FAKE") for j in jobs)
    assert tmp_files(gw) == []


def test_redis_url_setting() -> None:
    """REDIS_URL: empty means SQLite; anything but a Redis URL is refused without echoing it."""
    from pydantic import ValidationError

    from gateway.core.settings import Settings

    assert Settings(_env_file=None, REDIS_URL="").redis_url is None  # type: ignore[call-arg]
    url = Settings(_env_file=None, REDIS_URL="redis://:pw@127.0.0.1:6379/0").redis_url  # type: ignore[call-arg]
    assert url is not None and url.get_secret_value() == "redis://:pw@127.0.0.1:6379/0" and "pw" not in repr(url)
    try:
        Settings(_env_file=None, REDIS_URL="http://:hunter2@example.org")  # type: ignore[call-arg]
    except ValidationError as exc:
        assert "REDIS_URL must be redis://" in str(exc) and "hunter2" not in str(exc)
    else:
        raise AssertionError("a non-Redis URL was accepted")
