"""Faults with real processes: ``python -m gateway`` replicas (job workers on) sharing a real ``redis-server``
(AOF, appendfsync always), killed with SIGKILL or with Triton frozen by SIGSTOP. The chaos benchmark
(``make chaos``, benchmarks/chaos.py) measures the same under load; these check each behaviour once, small."""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.chaos import SyncResult, first_good_after, judge_jobs, parse_args, summarise_sync
from benchmarks.chaos_stack import GatewayProcess, RedisProcess, kill9_tree, with_cont
from tests.gateway.conftest import FAST, VideoServer, temp_folder_files
from tests.gateway.jobs.jobs_helpers import submit, wait_job
from triton_runtime.process import TritonProcess
from triton_runtime.server import ServerOptions

PREFIX = "gateway:jobs:"
GatewayStarter = Callable[..., GatewayProcess]


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; make test installs it)")
    server = RedisProcess(tmp_path / "redis", appendfsync="always").start()
    yield server
    server.stop()


@pytest.fixture
def start_gateway(tmp_path: Path, triton: TritonProcess) -> Iterator[GatewayStarter]:
    """Start ``python -m gateway`` processes (``start_gateway(name, **GATEWAY_env)``); stopped after the test, and
    their logs printed (pytest shows them when the test failed)."""
    started: list[GatewayProcess] = []

    def start(name: str, **env: str) -> GatewayProcess:
        values = {
            "GATEWAY_TRITON_GRPC_URL": triton.grpc_url,
            "GATEWAY_NUM_FRAMES": "8",
            "GATEWAY_TWIN_RELOAD_INTERVAL_S": "0",
            "GATEWAY_JOB_POLL_INTERVAL_S": "0.2",
            **env,
        }
        gw = GatewayProcess(tmp_path / f"gw-{name}", tmp_path / f"gateway-{name}.log", values)
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        gw.stop()
        print(f"--- gateway {gw.log_path.name} ---\n{gw.log_tail()}")


def leased_by(redis_proc: RedisProcess, gw: GatewayProcess, timeout_s: float = 60.0) -> str:
    """The id of a job that replica ``gw`` holds a lease on (waits for one)."""
    deadline = time.monotonic() + timeout_s
    with redis_proc.client() as r:
        while time.monotonic() < deadline:
            for job_id in r.zrange(f"{PREFIX}leases", 0, -1):
                if f"-{gw.pid}-" in (r.hget(f"{PREFIX}job:{job_id}", "worker") or ""):
                    return str(job_id)
            time.sleep(0.05)
    raise AssertionError(f"replica on port {gw.port} never leased a job")


def test_a_replica_killed_with_a_leased_job(
    start_gateway: GatewayStarter, redis_proc: RedisProcess, video_server: VideoServer
) -> None:
    """Replica A is SIGKILLed while it downloads a job (and a sync predict): once the lease expires, B runs the job
    to its one result; the idempotency key still names that one job; A's restart removes the temp files it left."""
    env = {"REDIS_URL": redis_proc.url, "GATEWAY_JOB_LEASE_S": "3"}
    a = start_gateway("a", **env)
    b = start_gateway("b", **env)
    slow = video_server.url("slow/6/face.mp4")  # A is killed within these 6 s
    with httpx.Client(base_url=a.url, timeout=60) as ca, httpx.Client(base_url=b.url, timeout=60) as cb:
        ids = submit(ca, {"urls": [slow, slow], **FAST}, **{"Idempotency-Key": "chaos-kill"})
        victim = leased_by(redis_proc, a)
        sync = threading.Thread(target=lambda: _ignore_errors(ca, slow), daemon=True)
        sync.start()
        deadline = time.monotonic() + 10
        while len(temp_folder_files(a.tmp_dir)) < 2:  # the job's and the sync predict's downloads are in flight
            assert time.monotonic() < deadline, temp_folder_files(a.tmp_dir)
            time.sleep(0.05)
        a.kill()
        left = temp_folder_files(a.tmp_dir)
        assert len(left) >= 2 and all(n.endswith(".video") for n in left), left  # kill -9 removes nothing
        jobs = [wait_job(cb, i, timeout=120) for i in ids]
        assert [j["status"] for j in jobs] == ["done", "done"], jobs
        taken = next(j for j in jobs if j["id"] == victim)
        assert taken["attempts"] == 2 and taken["result"]["predicted_class"] in ("REAL", "FAKE"), taken
        again = cb.post("/api/v1/jobs", json={"urls": [slow, slow], **FAST}, headers={"Idempotency-Key": "chaos-kill"})
        assert again.status_code == 200 and [j["id"] for j in again.json()["jobs"]] == ids
        with redis_proc.client() as r:
            assert f"-{b.pid}-" in r.hget(f"{PREFIX}job:{victim}", "worker")
            assert r.zscore(f"{PREFIX}finished", victim) is not None and r.zcard(f"{PREFIX}leases") == 0
            assert r.llen(f"{PREFIX}queue") == 0
        a.start()  # same data dir: the leftovers of the killed run are removed
        assert temp_folder_files(a.tmp_dir) == []
        assert wait_job(ca, victim)["result"] == taken["result"]  # one result, whoever asks
    sync.join(5)


def _ignore_errors(client: httpx.Client, url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the replica is killed under it: expected
        client.post("/api/v1/predict", json={"url": url, **FAST})


def test_redis_kill9_and_restart_keeps_queued_and_finished_jobs(
    start_gateway: GatewayStarter, redis_proc: RedisProcess, video_server: VideoServer
) -> None:
    """Redis SIGKILLed (no shutdown) with a job done, one running and one queued: after the restart on the same
    AOF all three are there, and the gateway reconnects by itself and finishes them."""
    gw = start_gateway("a", REDIS_URL=redis_proc.url, GATEWAY_JOB_LEASE_S="10")
    with httpx.Client(base_url=gw.url, timeout=60) as c:
        (done_id,) = submit(c, {"url": video_server.url("face.mp4"), **FAST})
        done = wait_job(c, done_id)
        assert done["status"] == "done"
        running, queued = submit(
            c, {"urls": [video_server.url("slow/3/face.mp4"), video_server.url("face.mp4")], **FAST}
        )
        wait_job(c, running, until=("downloading",))
        redis_proc.kill()
        health = c.get("/api/v1/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded", health.text
        assert health.json()["checks"]["jobs"]["ok"] is False
        assert c.get(f"/api/v1/jobs/{done_id}").status_code == 503
        redis_proc.start()
        with redis_proc.client() as r:  # straight from the AOF, before the gateway touches anything
            assert r.hget(f"{PREFIX}job:{done_id}", "status") == "done"
            assert r.hget(f"{PREFIX}job:{queued}", "status") is not None
            assert r.hget(f"{PREFIX}job:{running}", "status") is not None
        jobs = [wait_job(c, i, timeout=120) for i in (done_id, running, queued)]
        assert [j["status"] for j in jobs] == ["done"] * 3, jobs
        assert jobs[0]["result"] == done["result"]
        deadline = time.monotonic() + 30
        while c.get("/api/v1/health").json()["status"] != "ok":
            assert time.monotonic() < deadline, "the gateway did not report the store back"
            time.sleep(0.2)


@pytest.fixture
def own_triton(model_repository: Path, tmp_path: Path) -> Iterator[TritonProcess]:
    """A Triton of this test alone (it gets killed and frozen)."""
    server = TritonProcess.on_free_ports(tmp_path / "triton.log", ServerOptions(model_repository=model_repository))
    server.start()
    yield server
    if server.proc is not None:
        with_cont(server.proc)
    server.stop()


def test_triton_killed_then_frozen(
    start_gateway: GatewayStarter, own_triton: TritonProcess, video_server: VideoServer
) -> None:
    """Triton SIGKILLed: predicts answer 503 with Retry-After, health says degraded; restarted: verdicts again.
    Triton frozen (SIGSTOP) past the gateway's Triton timeout: the running predicts answer 504, none hangs, none is
    500, and once it is thawed (SIGCONT) the slots are free and the next predict is a verdict."""
    gw = start_gateway(
        "a",
        GATEWAY_TRITON_GRPC_URL=own_triton.grpc_url,
        GATEWAY_TRITON_TIMEOUT_S="3",
        GATEWAY_MAX_CONCURRENT_PREDICTIONS="2",
        GATEWAY_QUEUE_TIMEOUT_S="30",
    )
    body = {"url": video_server.url("face.mp4"), **FAST}
    with httpx.Client(base_url=gw.url, timeout=60) as c:
        assert c.post("/api/v1/predict", json=body).status_code == 200
        kill9_tree(own_triton.proc)
        down = c.post("/api/v1/predict", json=body)
        assert down.status_code == 503 and down.json()["error"]["type"] == "triton_unavailable", down.text
        assert int(down.headers["retry-after"]) > 0
        health = c.get("/api/v1/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        own_triton.start()
        _wait_verdict(c, body)

        assert own_triton.proc is not None
        own_triton.proc.send_signal(signal.SIGSTOP)
        try:
            statuses: list[int] = []
            threads = [threading.Thread(target=lambda: statuses.append(_post(gw, body))) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(90)
            assert len(statuses) == 3, "a predict hung"
            assert 504 in statuses and set(statuses) <= {503, 504}, statuses
        finally:
            with_cont(own_triton.proc)
        assert "gateway_predictions_in_flight 0.0" in c.get("/metrics").text
        _wait_verdict(c, body)


def _post(gw: GatewayProcess, body: dict[str, object]) -> int:
    with httpx.Client(base_url=gw.url, timeout=60) as c:
        return c.post("/api/v1/predict", json=body).status_code


def _wait_verdict(c: httpx.Client, body: dict[str, object], timeout_s: float = 60.0) -> None:
    """A verdict comes back (the gRPC channel reconnects with its own backoff)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = c.post("/api/v1/predict", json=body)
        if r.status_code == 200:
            assert r.json()["predicted_class"] in ("REAL", "FAKE")
            return
        assert r.status_code in (503, 504) and time.monotonic() < deadline, r.text
        time.sleep(0.5)


def test_chaos_benchmark_arguments_and_summary() -> None:
    """The benchmark's option parsing and its job accounting (the benchmark itself is ``make chaos``)."""
    from benchmarks.chaos import JobKey

    opts = parse_args(["--faults", "redis-kill,triton-hang", "--hang-s", "9", "--triton-timeout-s", "4"])
    assert opts.faults == ["redis-kill", "triton-hang"] and opts.hang_s == 9.0
    with pytest.raises(SystemExit):
        parse_args(["--faults", "meteor"])
    with pytest.raises(SystemExit):
        parse_args(["--faults", "triton-hang", "--hang-s", "2", "--triton-timeout-s", "5"])
    keys = [
        JobKey("k1", "u", ids=[["a"], ["a"]], accepted_at=1.0),
        JobKey("k2", "u", ids=[["b"], ["c"]], accepted_at=1.0),  # one key, two jobs: run twice
        JobKey("k3", "u", ids=[["d"]], accepted_at=1.0),
        JobKey("k4", "u"),  # never accepted: not submitted
    ]
    records: dict[str, dict[str, Any] | None] = {
        "a": {"status": "done", "attempts": 2, "error": {"type": "worker_lost"}},
        "b": {"status": "failed", "error": {"type": "triton_unavailable"}},
        "d": None,  # unknown to the store: lost
    }
    out = judge_jobs(keys, records)
    counts = (out.submitted, out.done, out.failed, out.lost, out.run_twice, out.retried, out.taken_over)
    assert counts == (3, 1, 1, 1, 1, 1, 1)
    assert out.failures == {"triton_unavailable": 1}
    results = [SyncResult(0, 1, "200", False), SyncResult(1, 2, "503", True), SyncResult(2, 5, "200", False)]
    assert summarise_sync(results) == "200:2 503:1 (503 with Retry-After 1/1)"
    assert first_good_after(results, 1.5) == 3.5 and first_good_after(results, 6) is None
