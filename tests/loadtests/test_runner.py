"""``python -m loadtests`` end to end: its own Triton and gateway, one user of each class for a few seconds."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# Never import locust here: it monkey-patches the whole process (pytest's too). Only look whether it is installed.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None,
    reason="the loadtest extra (locust) is not installed: pip install -e '.[loadtest]'",
)


def test_short_run_of_both_users(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "loadtests",
        *("--users", "2", "--spawn-rate", "2", "--duration", "5s", "--stop-timeout", "120s"),
        *("--classes", "gateway,triton", "--mix", "short:2,noface:1", "--heatmap", "on"),
        *("--label", "test", "--results", str(tmp_path / "results"), "--clip-cache", str(tmp_path / "clips")),
        *("--memory-interval", "1", "--no-warmup"),
    ]
    run = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-4000:]}\nstderr:\n{run.stderr[-4000:]}"

    (out,) = (tmp_path / "results").glob("test-*")
    for name in ("locust_stats.csv", "locust_stats_history.csv", "report.html", "memory.csv", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    assert "<html" in (out / "report.html").read_text()[:2000].lower()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and summary["problems"] == []
    endpoints = {e["name"]: e for e in summary["endpoints"]}
    with (out / "locust_stats.csv").open(newline="") as f:
        csv_counts = {r["Name"]: int(r["Request Count"]) for r in csv.DictReader(f)}
    for name, kind in (("/api/v1/predict", "POST"), ("deepfake_detector", "grpc")):
        e = endpoints[name]
        assert e["type"] == kind
        assert e["requests"] > 0 and e["failures"] == 0, e
        assert e["verdicts_per_min"] > 0 and e["p50_ms"] > 0 and e["p99_ms"] >= e["p50_ms"]
        assert csv_counts[name] == e["requests"]

    groups = summary["memory"]["groups"]
    assert {"gateway", "tritonserver", "python_stubs"} <= groups.keys()
    assert all(g["start_mb"] > 0 and g["end_mb"] > 0 for g in groups.values())
    # What it prints: the endpoint table with both endpoints and the memory table.
    assert "/api/v1/predict" in run.stdout and "deepfake_detector" in run.stdout and "gateway" in run.stdout
    assert "results:" in run.stdout and "loadtests: passed" in run.stdout
