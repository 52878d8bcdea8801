"""``make chaos``: faults under load with two gateway replicas, measured.

On loopback: one local Triton, one ``redis-server`` (AOF on), two ``python -m gateway`` replicas (job workers on,
jobs in that Redis, each its own data and temp folder) and a clip server. Threads drive load the whole time: sync
predicts round-robin over the replicas, and jobs, each submitted with its own Idempotency-Key and submitted again
with the same key until a replica accepts it. Faults come one after another, each in a phase of its own:

- ``triton-kill``: kill -9 of Triton, restarted after ``--fault-s``;
- ``redis-kill``: kill -9 of Redis, restarted on the same AOF after ``--fault-s``;
- ``gateway-kill``: kill -9 of replica A while it holds job leases, restarted after ``--fault-s``;
- ``triton-hang``: SIGSTOP of Triton for ``--hang-s`` (longer than the gateways' Triton timeout), then SIGCONT.

Per fault: the sync requests made in the phase and their statuses (``conn`` a refused connection, ``hang`` no
answer within the client's timeout); jobs submitted / done / failed / lost (a job id that a replica accepted and
that is unknown later, or still not finished after ``--drain-s``) / run twice (an idempotency key that yielded two
different job ids, or a job whose result changed once done); the time from the fault's end to the first good
verdict; the temp files of each replica after the phase; every process's RSS before and after.

    python -m benchmarks.chaos                     # ~3-4 min here
    python -m benchmarks.chaos --faults triton-hang --phase-s 20
"""

from __future__ import annotations

import argparse
import itertools
import secrets
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.chaos_stack import GatewayProcess, RedisProcess, kill9_tree, with_cont
from gateway.demo import sample_video, serve_directory
from triton_runtime.process import TritonProcess

FAULTS = ("triton-kill", "redis-kill", "gateway-kill", "triton-hang")
FAST = {"num_frames": 4, "heatmap": False}
MB = 1024 * 1024


@dataclass
class Options:
    faults: list[str]
    phase_s: float  # load before the fault + during it + after it, at least
    fault_s: float  # how long Triton / Redis / replica A stays down
    hang_s: float  # how long Triton stays frozen
    triton_timeout_s: float
    lease_s: float
    drain_s: float
    sync_threads: int
    job_interval_s: float
    job_max_attempts: int
    appendfsync: str
    logs_dir: Path


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.splitlines()[0])
    p.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, in order (of {', '.join(FAULTS)})")
    p.add_argument("--phase-s", type=float, default=30.0, help="length of each fault's phase of load")
    p.add_argument("--fault-s", type=float, default=8.0, help="how long a killed process stays down")
    p.add_argument("--hang-s", type=float, default=10.0, help="how long Triton stays frozen (SIGSTOP)")
    p.add_argument("--triton-timeout-s", type=float, default=5.0, help="the gateways' GATEWAY_TRITON_TIMEOUT_S")
    p.add_argument("--lease-s", type=float, default=6.0, help="the gateways' GATEWAY_JOB_LEASE_S")
    p.add_argument("--drain-s", type=float, default=90.0, help="longest wait for a phase's jobs to finish")
    p.add_argument("--sync-threads", type=int, default=2, help="threads sending sync predicts")
    p.add_argument("--job-interval-s", type=float, default=1.5, help="one job submitted every this often")
    p.add_argument(
        "--job-max-attempts", type=int, default=6, help="GATEWAY_JOB_MAX_ATTEMPTS (retries at 1, 2, 4, 8... s)"
    )
    p.add_argument("--appendfsync", choices=("always", "everysec"), default="always", help="Redis AOF fsync")
    p.add_argument("--logs-dir", type=Path, default=Path("results/chaos"), help="process logs go here")
    a = p.parse_args(argv)
    faults = [f.strip() for f in a.faults.split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        p.error(f"unknown fault(s): {', '.join(unknown)}")
    if "triton-hang" in faults and a.hang_s <= a.triton_timeout_s:
        p.error("--hang-s must be longer than --triton-timeout-s (the point is requests timing out)")
    return Options(
        faults=faults,
        phase_s=a.phase_s,
        fault_s=a.fault_s,
        hang_s=a.hang_s,
        triton_timeout_s=a.triton_timeout_s,
        lease_s=a.lease_s,
        drain_s=a.drain_s,
        sync_threads=a.sync_threads,
        job_interval_s=a.job_interval_s,
        job_max_attempts=a.job_max_attempts,
        appendfsync=a.appendfsync,
        logs_dir=a.logs_dir.resolve(),
    )


# --- what the load saw ---------------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    started: float
    ended: float
    status: str  # "200", "503", ..., "conn", "hang"
    retry_after: bool


@dataclass
class JobKey:
    """One idempotency key: every job id a replica answered for it, and when it was first accepted."""

    key: str
    url: str
    ids: list[list[str]] = field(default_factory=list)
    accepted_at: float | None = None


@dataclass
class Recorder:
    """Everything the load threads saw, thread-safe."""

    sync: list[SyncResult] = field(default_factory=list)
    keys: list[JobKey] = field(default_factory=list)
    submits: list[SyncResult] = field(default_factory=list)  # every POST /api/v1/jobs, retries included
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_sync(self, r: SyncResult) -> None:
        with self.lock:
            self.sync.append(r)

    def add_submit(self, r: SyncResult) -> None:
        with self.lock:
            self.submits.append(r)

    def add_key(self, k: JobKey) -> None:
        with self.lock:
            self.keys.append(k)


@dataclass
class JobOutcome:
    submitted: int = 0
    done: int = 0
    failed: int = 0
    lost: int = 0
    run_twice: int = 0
    retried: int = 0  # run more than once (a retry after an error, or a takeover)
    taken_over: int = 0  # queued again after a lease expired (error worker_lost on record), then done
    failures: Counter[str] = field(default_factory=Counter)


def summarise_sync(results: list[SyncResult]) -> str:
    """``"200:12 503:4 (Retry-After 4/4)"``: statuses by count, and how many 503s carried Retry-After."""
    counts = Counter(r.status for r in results)
    text = " ".join(f"{s}:{n}" for s, n in sorted(counts.items())) or "none"
    unavailable = [r for r in results if r.status == "503"]
    if unavailable:
        text += f" (503 with Retry-After {sum(r.retry_after for r in unavailable)}/{len(unavailable)})"
    return text


def first_good_after(results: list[SyncResult], t: float, good: tuple[str, ...] = ("200",)) -> float | None:
    """Seconds from ``t`` to the first answer in ``good`` after it (None if none)."""
    ends = [r.ended for r in results if r.status in good and r.ended >= t]
    return min(ends) - t if ends else None


def judge_jobs(keys: list[JobKey], jobs: dict[str, dict[str, Any] | None]) -> JobOutcome:
    """Count a phase's jobs from the keys submitted and each job's final record (None: unknown to the store)."""
    out = JobOutcome()
    for k in keys:
        if k.accepted_at is None:
            continue
        out.submitted += 1
        distinct = {tuple(ids) for ids in k.ids}
        if len(distinct) > 1:
            out.run_twice += 1
        for job_id in k.ids[0]:
            record = jobs.get(job_id)
            if record is None or record.get("status") not in ("done", "failed"):
                out.lost += 1
            elif record["status"] == "done":
                out.done += 1
                out.retried += int(record.get("attempts", 1) > 1)
                out.taken_over += (record.get("error") or {}).get("type") == "worker_lost"
            else:
                out.failed += 1
                out.failures[str((record.get("error") or {}).get("type"))] += 1
    return out


# --- the load ------------------------------------------------------------------------------------------------------


class Load:
    """The load threads, until ``stop``: sync predicts and job submissions, round-robin over the replicas."""

    def __init__(self, gateways: list[GatewayProcess], clip_url: str, opts: Options) -> None:
        self.gateways, self.clip_url, self.opts = gateways, clip_url, opts
        self.rec = Recorder()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._turn = itertools.count()

    def _next(self) -> GatewayProcess:
        return self.gateways[next(self._turn) % len(self.gateways)]

    def start(self) -> None:
        for n in range(self.opts.sync_threads):
            self._threads.append(threading.Thread(target=self._sync_loop, name=f"sync-{n}", daemon=True))
        self._threads.append(threading.Thread(target=self._job_loop, name="jobs", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)

    def _sync_loop(self) -> None:
        # The client waits past the gateway's own deadlines (download + queue + Triton): a "hang" is a real one.
        timeout = self.opts.triton_timeout_s + 40.0
        with httpx.Client(timeout=timeout) as c:
            while not self._stop.is_set():
                gw = self._next()
                started = time.monotonic()
                try:
                    r = c.post(f"{gw.url}/api/v1/predict", json={"url": self.clip_url, **FAST})
                    status, retry_after = str(r.status_code), "retry-after" in r.headers
                except httpx.TimeoutException:
                    status, retry_after = "hang", False
                except httpx.HTTPError:
                    status, retry_after = "conn", False
                self.rec.add_sync(SyncResult(started, time.monotonic(), status, retry_after))
                if status != "200":
                    self._stop.wait(0.3)  # as a client would, rather than spin on a refused connection

    def _job_loop(self) -> None:
        with httpx.Client(timeout=15.0) as c:
            while not self._stop.is_set():
                k = JobKey(key=f"chaos-{secrets.token_hex(6)}", url=f"{self.clip_url}?job={secrets.token_hex(4)}")
                self.rec.add_key(k)
                self._submit(c, k)
                if k.accepted_at is not None:  # the same key again, elsewhere: must answer the same ids
                    self._submit(c, k)
                self._stop.wait(self.opts.job_interval_s)

    def _submit(self, c: httpx.Client, k: JobKey) -> None:
        """POST the job with its key until a replica answers 200/202 (retrying refused and 503 answers)."""
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            gw = self._next()
            started = time.monotonic()
            try:
                r = c.post(f"{gw.url}/api/v1/jobs", json={"url": k.url, **FAST}, headers={"Idempotency-Key": k.key})
            except httpx.HTTPError:
                r = None
            status = str(r.status_code) if r is not None else "conn"
            retry_after = r is not None and "retry-after" in r.headers
            self.rec.add_submit(SyncResult(started, time.monotonic(), status, retry_after))
            if r is not None and r.status_code in (200, 202):
                k.ids.append([j["id"] for j in r.json()["jobs"]])
                k.accepted_at = k.accepted_at or time.monotonic()
                return
            time.sleep(0.5)


def final_jobs(gateways: list[GatewayProcess], keys: list[JobKey], drain_s: float) -> dict[str, dict[str, Any] | None]:
    """Each accepted job's record once finished, or its last state at the deadline (None: 404 everywhere)."""
    ids = {i for k in keys for ids in k.ids for i in ids}
    out: dict[str, dict[str, Any] | None] = {}
    deadline = time.monotonic() + drain_s
    with httpx.Client(timeout=10.0) as c:
        pending = set(ids)
        while pending:
            for job_id in sorted(pending):
                for gw in gateways:
                    try:
                        r = c.get(f"{gw.url}/api/v1/jobs/{job_id}")
                    except httpx.HTTPError:
                        continue
                    if r.status_code == 404:
                        out[job_id] = None
                    elif r.status_code == 200:
                        out[job_id] = r.json()
                    else:
                        continue
                    break
            pending = {i for i in pending if (out.get(i) or {}).get("status") not in ("done", "failed")}
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    return out


# --- the stack and the faults --------------------------------------------------------------------------------------


@dataclass
class Stack:
    triton: TritonProcess
    redis: RedisProcess
    gateways: list[GatewayProcess]
    clip_url: str

    def pids(self) -> dict[str, int]:
        out = {
            "triton": self.triton.proc.pid if self.triton.proc else 0,
            "redis": self.redis.proc.pid if self.redis.proc else 0,
        }
        out.update({f"gateway-{'ab'[n]}": g.pid for n, g in enumerate(self.gateways) if g.proc})
        return out


def rss(pids: dict[str, int]) -> dict[str, float]:
    """RSS in MB of each process and its children (Triton's Python stubs count as Triton's)."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
            out[name] = sum(p.memory_info().rss for p in procs) / MB
        except psutil.Error:
            out[name] = 0.0
    return out


def temp_names(g: GatewayProcess) -> set[str]:
    """Entries of a replica's temp folder but its lock file."""
    return {p.name for p in g.tmp_dir.iterdir() if not p.name.startswith(".")} if g.tmp_dir.exists() else set()


def temp_files(g: GatewayProcess) -> int:
    return len(temp_names(g))


def _thaw(triton: TritonProcess) -> None:
    if triton.proc is not None:
        with_cont(triton.proc)


@contextmanager
def chaos_stack(opts: Options) -> Iterator[Stack]:
    """Triton, Redis, two replicas and the clip server; all stopped at the end."""
    opts.logs_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-", dir=opts.logs_dir)))
        media = work / "media"
        media.mkdir()
        (media / "clip.mp4").write_bytes(sample_video().read_bytes())
        clip_url = stack.enter_context(serve_directory(media)) + "/clip.mp4"
        triton = TritonProcess.on_free_ports(opts.logs_dir / "triton.log")
        stack.callback(triton.stop)
        stack.callback(_thaw, triton)  # first: a frozen Triton would not stop
        triton.start()
        redis_server = RedisProcess(work / "redis", appendfsync=opts.appendfsync)
        stack.callback(redis_server.stop)
        redis_server.start()
        env = {
            "REDIS_URL": redis_server.url,
            "GATEWAY_TRITON_GRPC_URL": triton.grpc_url,
            "GATEWAY_TRITON_TIMEOUT_S": str(opts.triton_timeout_s),
            "GATEWAY_JOB_LEASE_S": str(opts.lease_s),
            "GATEWAY_JOB_WORKERS": "1",
            "GATEWAY_JOB_RETRY_BACKOFF_S": "1",
            "GATEWAY_JOB_MAX_ATTEMPTS": str(opts.job_max_attempts),
            "GATEWAY_JOB_POLL_INTERVAL_S": "0.25",
            "GATEWAY_QUEUE_TIMEOUT_S": "10",
            "GATEWAY_TWIN_RELOAD_INTERVAL_S": "0",
        }
        gateways = [GatewayProcess(work / f"gw-{n}", opts.logs_dir / f"gateway-{n}.log", env) for n in "ab"]
        for g in gateways:
            stack.callback(g.stop)
            g.start()
        yield Stack(triton, redis_server, gateways, clip_url)


def wait_leased_by(stack: Stack, gw: GatewayProcess, timeout_s: float) -> int:
    """Wait until replica ``gw`` holds at least one job lease; the number it holds (0 at the timeout)."""
    deadline = time.monotonic() + timeout_s
    with stack.redis.client() as r:
        while True:
            held = 0
            for job_id in r.zrange("gateway:jobs:leases", 0, -1):
                worker = r.hget(f"gateway:jobs:job:{job_id}", "worker") or ""
                held += f"-{gw.pid}-" in worker
            if held or time.monotonic() > deadline:
                return held
            time.sleep(0.1)


def _then(action: Callable[[], object], note: str = "") -> Callable[[], str]:
    """A fault's end: run ``action``, return ``note``."""

    def end() -> str:
        action()
        return note

    return end


def inject(fault: str, stack: Stack, opts: Options) -> tuple[Callable[[], str], str]:
    """Start ``fault`` now; the function that ends it (it returns a note of what it saw), and a note."""
    if fault == "triton-kill":
        stubs = kill9_tree(stack.triton.proc)
        return _then(stack.triton.start), f"tritonserver and its {stubs} stubs SIGKILL, restarted on the same ports"
    if fault == "redis-kill":
        stack.redis.kill()
        return _then(stack.redis.start), f"redis-server SIGKILL, restarted on its AOF ({opts.appendfsync})"
    if fault == "gateway-kill":
        a = stack.gateways[0]
        held = wait_leased_by(stack, a, 30.0)
        a.kill()

        def restart() -> str:
            left = temp_names(a)  # what the killed replica left; its next start removes it
            a.start()
            return f"; it left {len(left)} temp file(s), {len(left & temp_names(a))} of them after its restart"

        return restart, f"replica A SIGKILL holding {held} job lease(s), restarted"
    if fault == "triton-hang":
        proc = stack.triton.proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        return _then(lambda: with_cont(proc)), "tritonserver SIGSTOP, then SIGCONT"
    raise ValueError(fault)


@dataclass
class PhaseReport:
    fault: str
    note: str
    sync_during: str
    sync_all: str
    jobs: JobOutcome
    recovery_s: float | None
    submits: str
    job_recovery_s: float | None
    temp_files: list[int]
    rss_before: dict[str, float]
    rss_after: dict[str, float]
    fault_len_s: float


def run_phase(fault: str, stack: Stack, opts: Options) -> PhaseReport:
    before = rss(stack.pids())
    load = Load(stack.gateways, stack.clip_url, opts)
    load.start()
    lead = max(3.0, opts.phase_s * 0.2)
    time.sleep(lead)
    began = time.monotonic()
    end_fault, note = inject(fault, stack, opts)
    time.sleep(opts.hang_s if fault == "triton-hang" else opts.fault_s)
    note += end_fault()
    ended = time.monotonic()
    time.sleep(max(5.0, opts.phase_s - (ended - began) - lead))
    load.stop()
    jobs = final_jobs(stack.gateways, load.rec.keys, opts.drain_s)
    time.sleep(1.0)  # requests just ended remove their files
    during = [r for r in load.rec.sync if r.started < ended and r.ended >= began]
    return PhaseReport(
        fault=fault,
        note=note,
        sync_during=summarise_sync(during),
        sync_all=summarise_sync(load.rec.sync),
        jobs=judge_jobs(load.rec.keys, jobs),
        recovery_s=first_good_after(load.rec.sync, ended),
        submits=summarise_sync(load.rec.submits),
        job_recovery_s=first_good_after(load.rec.submits, ended, ("200", "202")),
        temp_files=[temp_files(g) for g in stack.gateways],
        rss_before=before,
        rss_after=rss(stack.pids()),
        fault_len_s=ended - began,
    )


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:.1f} s"


def format_report(r: PhaseReport) -> str:
    """One fault's table."""
    j = r.jobs
    failures = ", ".join(f"{k} {n}" for k, n in sorted(j.failures.items()))
    rows = [
        ("fault", f"{r.fault}: {r.note} ({r.fault_len_s:.1f} s)"),
        ("sync predicts during the fault", r.sync_during),
        ("sync predicts, whole phase", r.sync_all),
        (
            "jobs submitted / done / failed / lost / run twice",
            f"{j.submitted} / {j.done} / {j.failed} / {j.lost} / {j.run_twice}"
            + (f"  (failed: {failures})" if failures else ""),
        ),
        ("job POSTs (a key resent after 503/conn and 202)", r.submits),
        ("jobs done after a retry / after a lease takeover", f"{j.retried} / {j.taken_over}"),
        ("fault's end to first good verdict", _seconds(r.recovery_s)),
        ("fault's end to first job accepted", _seconds(r.job_recovery_s)),
        ("temp files left (replica A, B)", ", ".join(map(str, r.temp_files))),
    ]
    for name in sorted(r.rss_before.keys() | r.rss_after.keys()):
        rows.append(
            (f"RSS {name} before -> after (MB)", f"{r.rss_before.get(name, 0):.0f} -> {r.rss_after.get(name, 0):.0f}")
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows)


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    print(
        f"chaos: faults {', '.join(opts.faults)}; phase {opts.phase_s:g} s, outage {opts.fault_s:g} s, hang "
        f"{opts.hang_s:g} s; Triton timeout {opts.triton_timeout_s:g} s, job lease {opts.lease_s:g} s, job attempts "
        f"{opts.job_max_attempts}, Redis appendfsync {opts.appendfsync}; logs in {opts.logs_dir}",
        flush=True,
    )
    with chaos_stack(opts) as stack:
        reports = []
        for fault in opts.faults:
            report = run_phase(fault, stack, opts)
            reports.append(report)
            print(format_report(report) + "\n", flush=True)
    bad = [r.fault for r in reports if r.jobs.lost or r.jobs.run_twice or any(r.temp_files)]
    print("chaos: " + (f"PROBLEMS in {', '.join(bad)}" if bad else "no job lost, none run twice, no temp file left"))


if __name__ == "__main__":
    main()
