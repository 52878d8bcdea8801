"""Locust's CSV statistics as per-endpoint figures, and the text summary the runner prints."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

# Endpoints whose successful answers are verdicts (one video analysed each).
VERDICT_ENDPOINTS = {"/api/v1/predict", "deepfake_detector"}


def _num(value: str) -> float:
    try:
        return float(value)
    except ValueError:  # Locust writes "N/A" for a percentile of an endpoint without requests
        return 0.0


def endpoint_stats(stats_csv: Path) -> list[dict[str, Any]]:
    """One row per endpoint (and the Aggregated row) of Locust's ``<prefix>_stats.csv``."""
    rows = []
    with stats_csv.open(newline="") as f:
        for r in csv.DictReader(f):
            count = int(r["Request Count"])
            failures = int(r["Failure Count"])
            rps = _num(r["Requests/s"])
            # Locust's Requests/s is count / (last request - start): its own span of the run.
            span_s = count / rps if rps else 0.0
            rows.append(
                {
                    "type": r["Type"],
                    "name": r["Name"],
                    "requests": count,
                    "failures": failures,
                    "requests_per_s": round(rps, 4),
                    "p50_ms": _num(r["50%"]),
                    "p95_ms": _num(r["95%"]),
                    "p99_ms": _num(r["99%"]),
                    "max_ms": _num(r["Max Response Time"]),
                    "span_s": round(span_s, 1),
                    "verdicts_per_min": round(60.0 * (count - failures) / span_s, 2)
                    if span_s and r["Name"] in VERDICT_ENDPOINTS
                    else None,
                }
            )
    return rows


def failure_messages(failures_csv: Path, limit: int = 10) -> list[dict[str, Any]]:
    """The most frequent failures of Locust's ``<prefix>_failures.csv``."""
    if not failures_csv.exists():
        return []
    with failures_csv.open(newline="") as f:
        rows = [(int(r["Occurrences"]), r["Name"], r["Error"]) for r in csv.DictReader(f)]
    rows.sort(key=lambda r: -r[0])
    return [{"name": name, "error": error, "occurrences": n} for n, name, error in rows[:limit]]


def format_summary(summary: dict[str, Any]) -> str:
    """The runner's printed report: the endpoint table, failures, memory."""
    lines = [
        f"load test: {summary['users']} users ({', '.join(summary['classes'])}), {summary['duration']}, "
        f"heatmap {summary['heatmap']}, mix {summary['clip_mix']}"
        + (f", pacing {summary['pacing_s']:g} s" if summary["pacing_s"] else ""),
        "",
        f"{'endpoint':<22} {'requests':>8} {'fail':>5} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} "
        f"{'verdicts/min':>12}",
    ]
    for e in summary["endpoints"]:
        vpm = "" if e["verdicts_per_min"] is None else f"{e['verdicts_per_min']:.1f}"
        lines.append(
            f"{e['name']:<22} {e['requests']:>8} {e['failures']:>5} {e['requests_per_s']:>7.3f} "
            f"{e['p50_ms'] / 1000:>7.2f} {e['p95_ms'] / 1000:>7.2f} {e['p99_ms'] / 1000:>7.2f} {vpm:>12}"
        )
    for f in summary["failure_messages"]:
        lines.append(f"  failure x{f['occurrences']} {f['name']}: {f['error'][:200]}")
    lines += ["", f"{'memory (RSS)':<22} {'procs':>5} {'start MB':>9} {'end MB':>9} {'peak MB':>9} {'growth':>8}"]
    for name, g in summary["memory"]["groups"].items():
        lines.append(
            f"{name:<22} {g['processes']:>5} {g['start_mb']:>9.1f} {g['end_mb']:>9.1f} {g['peak_mb']:>9.1f} "
            f"{g['growth_pct']:>7.1f}%"
        )
    worst = max(summary["memory"]["processes"], key=lambda p: p["growth_pct"], default=None)
    if worst:
        lines.append(
            f"  largest growth of one process: {worst['label']} ({worst['group']}) {worst['growth_pct']:+.1f}%"
        )
    base = summary["memory"].get("baseline_after_s") or 0
    if base:
        lines.append(f"  start RSS taken {base:g} s into the run (--rss-baseline)")
    lines += ["", f"results: {summary['results_dir']}"]
    return "\n".join(lines)
