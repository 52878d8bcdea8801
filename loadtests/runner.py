"""``python -m loadtests`` (``make loadtest``, ``make soak``): Locust headless against a local stack it starts.

Generates the clips once (cached), starts a loopback HTTP server of them, Triton and the gateway (open access, local
storage in a temp data dir, loopback admitted as a video source) on free ports, sends one warm-up prediction,
records the RSS of every process of the stack, runs Locust headless for a bounded time, stops everything and prints
per endpoint requests/s, p50/p95/p99, failures and verdicts per minute, and RSS at start and end. Everything goes to
``results/<label>-<UTC timestamp>/``: Locust's CSV files and HTML report, memory.csv, the logs and summary.json.
Exits 1 when a request failed or an endpoint got no request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.stack import LocalStack, local_stack
from deepfake_core.paths import REPO_ROOT
from loadtests.clips import DEFAULT_CACHE, DEFAULT_MIX, Clip, ensure_clips, parse_mix
from loadtests.memory import MemoryWatch
from loadtests.report import endpoint_stats, failure_messages, format_summary

RESULTS = REPO_ROOT / "results"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USER_CLASSES = {"gateway": ("GatewayUser", "/api/v1/predict"), "triton": ("TritonUser", "deepfake_detector")}


def parse_duration(text: str) -> int:
    """Locust's time span (``90``, ``90s``, ``3m``, ``1h30m``) in seconds."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?", text)
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 3m, 1h30m)")
    h, m, s = (int(g or 0) for g in parts.groups())
    return 3600 * h + 60 * m + s


def _classes(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in USER_CLASSES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"users are a comma list of {', '.join(USER_CLASSES)}; got {text!r}")
    return names


def _mix(text: str) -> str:
    try:
        parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__.splitlines()[0])
    p.add_argument("-u", "--users", type=int, default=4, help="Locust users in all (split evenly over the classes)")
    p.add_argument("-r", "--spawn-rate", type=float, default=1.0, help="users started per second")
    p.add_argument("-t", "--duration", type=parse_duration, default=180, help="run time: 90s, 3m, 1h30m")
    p.add_argument("--heatmap", choices=("on", "off"), default="on", help="Grad-CAM heatmaps in the gateway's answers")
    p.add_argument(
        "--classes", type=_classes, default=["gateway"], help="which users: gateway, triton or gateway,triton"
    )
    p.add_argument("--mix", type=_mix, default=DEFAULT_MIX, help="clip mix name:weight,... (loadtests/clips.py)")
    p.add_argument("--num-frames", type=int, default=0, help="frames analysed per video (0: the service's default)")
    p.add_argument("--pacing", type=float, default=0.0, help="seconds between a user's request starts (0: none)")
    p.add_argument(
        "--stop-timeout", type=parse_duration, default=300, help="time in-flight requests get to finish at the end"
    )
    p.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="skip the warm-up (start RSS before any request)"
    )
    p.add_argument(
        "--rss-baseline",
        type=parse_duration,
        default=0,
        help="take the start RSS this long into the run, once the working set has settled (make soak: 2m)",
    )
    p.add_argument(
        "--max-rss-growth",
        type=float,
        default=None,
        help="fail when any process's RSS grew more than this percentage from start to end (make soak: 10)",
    )
    p.add_argument("--label", default="loadtest", help="results folder name: results/<label>-<timestamp>")
    p.add_argument("--results", type=Path, default=RESULTS, help="parent of the results folder")
    p.add_argument("--clip-cache", type=Path, default=DEFAULT_CACHE, help="where the generated clips are kept")
    p.add_argument("--memory-interval", type=float, default=5.0, help="seconds between RSS samples")
    return p


def locust_command(a: argparse.Namespace, stack: LocalStack, clip_dir: Path, out: Path) -> list[str]:
    """The headless Locust command line for these arguments against ``stack``."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "-u",
        str(a.users),
        "-r",
        str(a.spawn_rate),
        "-t",
        f"{a.duration}s",
        "--stop-timeout",
        f"{a.stop_timeout}s",
        "--csv",
        str(out / "locust"),
        "--html",
        str(out / "report.html"),
        "--host",
        stack.gateway_url,
        "--media-url",
        stack.media_url,
        "--clip-dir",
        str(clip_dir),
        "--clip-mix",
        a.mix,
        "--heatmap",
        a.heatmap,
        "--num-frames",
        str(a.num_frames),
        "--triton-grpc",
        stack.triton.grpc_url,
        "--pacing",
        str(a.pacing),
        *(USER_CLASSES[c][0] for c in a.classes),
    ]


def warm_up(a: argparse.Namespace, stack: LocalStack) -> None:
    """Each clip of the mix, ``users`` requests at a time, so that start-up costs (Grad-CAM's model, Triton's
    first sessions and buffers) are counted neither in the run nor in the start RSS."""
    heatmap = a.heatmap == "on"

    def predict(clip: Clip) -> None:
        body: dict[str, Any] = {"url": f"{stack.media_url}/{clip.file}", "heatmap": heatmap}
        if a.num_frames:
            body["num_frames"] = a.num_frames
        r = httpx.post(f"{stack.gateway_url}/api/v1/predict", json=body, timeout=600)
        if r.status_code != 200:
            raise RuntimeError(f"the warm-up prediction of {clip.name} failed: HTTP {r.status_code} {r.text[:500]}")

    # Every clip at least once, and as many at once as there will be users, so that each of Triton's model
    # instances has served a request before the start RSS is taken.
    clips = [e.clip for e in parse_mix(a.mix)]
    concurrency = max(1, min(a.users, 4))  # more would only wait in the gateway's queue
    batch = [clips[i % len(clips)] for i in range(max(len(clips), concurrency))]
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(predict, batch))


def run_locust(cmd: list[str], log_path: Path, timeout_s: float) -> int:
    """Locust until it exits (killed after ``timeout_s``); its output goes to ``log_path``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"Locust did not stop within {timeout_s:.0f} s; log: {log_path}") from None
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C): never leave it behind
                proc.kill()
                proc.wait()


def run(a: argparse.Namespace) -> dict[str, Any]:
    """The whole load test; returns the summary (also written to summary.json)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = a.results / f"{a.label}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"clips: {a.mix} (cache {a.clip_cache})", flush=True)
    clip_dir = ensure_clips(parse_mix(a.mix), a.clip_cache)
    load_start = os.getloadavg()
    print(f"starting Triton and the gateway on loopback (logs in {out}) ...", flush=True)
    with local_stack(clip_dir, out, "stack", {"GATEWAY_HEATMAP": "true" if a.heatmap == "on" else "false"}) as stack:
        assert stack.triton.proc is not None
        if a.warmup:
            print("warm-up: each clip of the mix, as many at once as users ...", flush=True)
            warm_up(a, stack)
        watch = MemoryWatch({"gateway": stack.gateway.pid, "tritonserver": stack.triton.proc.pid}, a.memory_interval)
        watch.mark_start()
        print(f"locust: {a.users} users for {a.duration} s (+ up to {a.stop_timeout} s to finish) ...", flush=True)
        try:
            code = run_locust(
                locust_command(a, stack, clip_dir, out), out / "locust.log", a.duration + a.stop_timeout + 120
            )
        finally:
            watch.stop()
    watch.write_csv(out / "memory.csv")
    stats_csv = out / "locust_stats.csv"
    if not stats_csv.exists():
        raise RuntimeError(f"Locust wrote no statistics (exit {code}); log: {out / 'locust.log'}")
    summary: dict[str, Any] = {
        "timestamp": stamp,
        "users": a.users,
        "spawn_rate": a.spawn_rate,
        "duration": f"{a.duration} s",
        "duration_s": a.duration,
        "heatmap": a.heatmap,
        "classes": a.classes,
        "clip_mix": a.mix,
        "num_frames": a.num_frames or None,
        "pacing_s": a.pacing,
        "warmup": a.warmup,
        "max_rss_growth_pct": a.max_rss_growth,
        "locust_exit_code": code,
        "endpoints": endpoint_stats(stats_csv),
        "failure_messages": failure_messages(out / "locust_failures.csv"),
        "memory": watch.report(a.rss_baseline),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_start, "loadavg_after": os.getloadavg()},
        "results_dir": str(out),
        "files": {"stats_csv": str(stats_csv), "html": str(out / "report.html"), "memory_csv": str(out / "memory.csv")},
    }
    summary["problems"] = problems(summary, a.max_rss_growth)
    summary["passed"] = not summary["problems"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def problems(summary: dict[str, Any], max_rss_growth: float | None = None) -> list[str]:
    """Why the run did not pass: failures, a selected endpoint without requests, a process whose RSS grew more
    than ``max_rss_growth`` percent. Empty when it passed."""
    out = []
    by_name = {e["name"]: e for e in summary["endpoints"]}
    for c in summary["classes"]:
        name = USER_CLASSES[c][1]
        if by_name.get(name, {}).get("requests", 0) == 0:
            out.append(f"{name}: no request completed")
    out += [
        f"{e['name']}: {e['failures']} failures"
        for e in summary["endpoints"]
        if e["failures"] and e["name"] != "Aggregated"
    ]
    if max_rss_growth is not None:
        out += [
            f"{p['label']} ({p['group']}, pid {p['pid']}): RSS grew {p['growth_pct']:.1f}% > {max_rss_growth:g}%"
            for p in summary["memory"]["processes"]
            if p["growth_pct"] > max_rss_growth
        ]
    return out


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    t0 = time.monotonic()
    try:
        summary = run(a)
    except RuntimeError as exc:
        sys.exit(f"loadtests: {exc}")
    print(format_summary(summary))
    print(f"(took {time.monotonic() - t0:.0f} s in all)")
    if summary["problems"]:
        sys.exit("loadtests: FAILED\n  " + "\n  ".join(summary["problems"]))
    print("loadtests: passed")
