"""The runner's pieces without a stack: the clip mix, durations, Locust's CSV, the pass/fail rules, RSS of a tree."""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadtests.clips import CATALOGUE, parse_mix, pick
from loadtests.memory import MemoryWatch
from loadtests.report import endpoint_stats, failure_messages
from loadtests.runner import parse_duration, problems

STATS_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def test_mix_weights_and_errors() -> None:
    mix = parse_mix("hd720:3, noface")
    assert [(e.clip.name, e.weight) for e in mix] == [("hd720", 3), ("noface", 1)]
    counts = {n: 0 for n in ("hd720", "noface")}
    rng = random.Random(1)
    for _ in range(4000):
        counts[pick(mix, rng).name] += 1
    assert 2.5 < counts["hd720"] / counts["noface"] < 3.5
    for bad, words in (
        ("vhs:1", "unknown clip 'vhs'"),
        ("hd720:0", "at least 1"),
        ("hd720:x", "whole number"),
        ("", "empty"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_mix(bad)
    assert not CATALOGUE["noface"].face and CATALOGUE["hd720"].file.endswith("1280x720_30fps_10s.mp4")


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "3m", "1h30m", "1m30s")] == [90, 90, 180, 5400, 90]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("three minutes")


def test_endpoint_stats_from_locust_csv(tmp_path: Path) -> None:
    stats = tmp_path / "x_stats.csv"
    figures = "10,1,5000,5100,4000,9000,3000,0.1,0.01,5000,5100,5200,5300,6000,7000,8000,8500,9000,9000,9000"
    stats.write_text(f"{STATS_HEADER}\nPOST,/api/v1/predict,{figures}\n,Aggregated,{figures}\n")
    predict, total = endpoint_stats(stats)
    assert (predict["requests"], predict["failures"], predict["p50_ms"], predict["p95_ms"], predict["p99_ms"]) == (
        10,
        1,
        5000,
        7000,
        8500,
    )
    # 10 requests at 0.1/s: a 100 s span; 9 verdicts in 100 s.
    assert predict["span_s"] == 100 and predict["verdicts_per_min"] == pytest.approx(5.4)
    assert total["verdicts_per_min"] is None
    fails = tmp_path / "x_failures.csv"
    fails.write_text("Method,Name,Error,Occurrences\nPOST,/api/v1/predict,HTTP 503,1\nPOST,/api/v1/predict,x,4\n")
    assert [f["occurrences"] for f in failure_messages(fails)] == [4, 1]
    assert failure_messages(tmp_path / "absent.csv") == []


def test_problems() -> None:
    ok = {"requests": 3, "failures": 0}
    summary = {
        "classes": ["gateway", "triton"],
        "endpoints": [{"name": "/api/v1/predict", **ok}, {"name": "deepfake_detector", **ok}],
        "memory": {"processes": [{"label": "python", "group": "gateway", "pid": 1, "growth_pct": 12.0}]},
    }
    assert problems(summary) == []
    assert problems(summary, max_rss_growth=10) == ["python (gateway, pid 1): RSS grew 12.0% > 10%"]
    summary["endpoints"] = [{"name": "/api/v1/predict", "requests": 3, "failures": 2}]
    assert problems(summary) == ["deepfake_detector: no request completed", "/api/v1/predict: 2 failures"]


def test_memory_watch_sees_a_growing_child() -> None:
    """A real child process that allocates ~60 MB after a while: the tree's RSS and its growth show it."""
    grow = "import time; time.sleep(1.5); b = bytearray(60 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", grow])
    try:
        watch = MemoryWatch({"gateway": os.getpid()}, interval_s=0.2)
        start = watch.mark_start()
        assert any(k.pid == child.pid for k in start) and any(k.pid == os.getpid() for k in start)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and psutil.Process(child.pid).memory_info().rss < 50 * 2**20:
            time.sleep(0.2)
        watch.stop()
        report = watch.report()
        (proc,) = [p for p in report["processes"] if p["pid"] == child.pid]
        assert proc["end_mb"] - proc["start_mb"] > 50 and proc["growth_pct"] > 0
        assert report["groups"]["gateway"]["peak_mb"] >= report["groups"]["gateway"]["end_mb"] - 0.1
        # A baseline taken after the allocation: no growth of that child any more.
        settled = watch.report(baseline_after_s=watch.samples[-1][0] - watch.samples[0][0])
        (late,) = [p for p in settled["processes"] if p["pid"] == child.pid]
        assert late["growth_pct"] == 0.0 and late["start_mb"] > 50
    finally:
        child.kill()
        child.wait()
