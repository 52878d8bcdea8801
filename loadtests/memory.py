"""Resident memory (RSS) of the stack's processes: the gateway, tritonserver and its Python-backend stubs.

``MemoryWatch`` samples every process of the watched trees in a thread (for the peak and memory.csv) and keeps the
first and last sample of each process, so growth is reported per process and per group.
"""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

MB = 1024 * 1024


@dataclass(frozen=True)
class ProcessKey:
    """A process of a watched tree: its group (``gateway``, ``tritonserver``, ``python_stubs``), pid and label."""

    group: str
    pid: int
    label: str = field(compare=False)  # a process's name can change (a fork exec'ing): the pid is what counts


def _stub_label(proc: psutil.Process) -> str:
    """A Python-backend stub's model name (its first argument is the model's path), else the process name."""
    try:
        args = proc.cmdline()
    except (psutil.Error, OSError):
        return proc.name()
    for arg in args[1:2]:
        parts = Path(arg).parts
        if len(parts) >= 3:
            return f"stub:{parts[-3]}"  # .../<model>/<version>/model.py
    return proc.name()


def tree_rss(roots: dict[str, int]) -> dict[ProcessKey, int]:
    """RSS in bytes of each root process and its descendants. A root's children are reported in their own group
    when they are Triton's Python stubs, else in the root's group. Processes that vanish are skipped."""
    out: dict[ProcessKey, int] = {}
    for group, pid in roots.items():
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in procs:
            try:
                rss = proc.memory_info().rss
                is_stub = "stub" in proc.name()
                key = ProcessKey(
                    "python_stubs" if is_stub else group,
                    proc.pid,
                    _stub_label(proc) if is_stub else proc.name(),
                )
            except psutil.Error:
                continue
            out[key] = rss
    return out


@dataclass
class MemoryWatch:
    """Samples ``tree_rss(roots)`` every ``interval_s`` from ``mark_start()`` until ``stop()``."""

    roots: dict[str, int]
    interval_s: float = 5.0
    samples: list[tuple[float, dict[ProcessKey, int]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> dict[ProcessKey, int]:
        snap = tree_rss(self.roots)
        self.samples.append((time.time(), snap))
        return snap

    def mark_start(self) -> dict[ProcessKey, int]:
        """The start figures (after warm-up); sampling goes on in a thread until ``stop()``."""
        self.samples.clear()
        first = self.sample()
        self._thread = threading.Thread(target=self._loop, name="memory-watch", daemon=True)
        self._thread.start()
        return first

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> dict[ProcessKey, int]:
        """Stop sampling; the end figures."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.sample()

    def report(self, baseline_after_s: float = 0.0) -> dict[str, Any]:
        """Start, end, peak and growth: per group (summed) and per process (start and end both seen). The start is
        the first sample ``baseline_after_s`` or more after the first one (a long run's settled working set); the
        peak is over all samples."""
        if not self.samples:
            return {"groups": {}, "processes": [], "baseline_after_s": 0.0}
        t0 = self.samples[0][0]
        base_t, start = next(((t, s) for t, s in self.samples if t - t0 >= baseline_after_s), self.samples[-1])
        end = self.samples[-1][1]
        groups: dict[str, dict[str, float]] = {}
        for name in sorted({k.group for k in start} | {k.group for k in end}):
            totals = [sum(v for k, v in snap.items() if k.group == name) for _, snap in self.samples]
            s = sum(v for k, v in start.items() if k.group == name)
            e = sum(v for k, v in end.items() if k.group == name)
            groups[name] = {
                "processes": sum(1 for k in end if k.group == name),
                "start_mb": round(s / MB, 1),
                "end_mb": round(e / MB, 1),
                "peak_mb": round(max(totals) / MB, 1),
                "growth_pct": round(100.0 * (e - s) / s, 2) if s else 0.0,
            }
        labels = {k: k.label for k in end}  # the latest name of each process
        processes = [
            {
                "group": k.group,
                "pid": k.pid,
                "label": labels[k],
                "start_mb": round(start[k] / MB, 1),
                "end_mb": round(end[k] / MB, 1),
                "growth_pct": round(100.0 * (end[k] - start[k]) / start[k], 2) if start[k] else 0.0,
            }
            for k in sorted(start.keys() & end.keys(), key=lambda k: (k.group, k.label, k.pid))
        ]
        gone = sorted(f"{k.group}:{k.label}:{k.pid}" for k in start.keys() - end.keys())
        new = sorted(f"{k.group}:{k.label}:{k.pid}" for k in end.keys() - start.keys())
        return {
            "groups": groups,
            "processes": processes,
            "exited": gone,
            "started": new,
            "baseline_after_s": round(base_t - t0, 1),
        }

    def write_csv(self, path: Path) -> None:
        """One row per sample: time since start and each group's total RSS in MB."""
        if not self.samples:
            return
        groups = sorted({k.group for _, snap in self.samples for k in snap})
        t0 = self.samples[0][0]
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["elapsed_s", *(f"{g}_mb" for g in groups)])
            for t, snap in self.samples:
                w.writerow(
                    [
                        round(t - t0, 1),
                        *(round(sum(v for k, v in snap.items() if k.group == g) / MB, 1) for g in groups),
                    ]
                )
