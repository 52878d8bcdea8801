"""`make bench-gateway`: p50/p95 of a full POST /api/v1/predict (Grad-CAM on, local storage) on a generated 10 s
1280x720 30 fps clip, the time per stage, and the "floor" (decoding the clip and encoding it again with the same
encoder settings, no colour conversion) measured in the same run, before and after the predictions; prints the
ratio (issue 15's target: full predict <= 1.6x the floor; 1.3x is the longer-term goal).

Starts its own Triton and gateway (``python -m gateway``, as in production) on free loopback ports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.stack import local_stack
from benchmarks.triton_bench import bench_clip
from deepfake_core.paths import REPO_ROOT
from gateway.core.settings import Settings
from gateway.services.prediction.stages import TIMED

RESULTS = REPO_ROOT / "results"
STAGES = [stage.value for stage in TIMED]
TARGET_RATIO = 1.6


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure_floor_s(clip: Path, settings: Settings, runs: int) -> list[float]:
    """Decode + re-encode the clip with the overlay's encoder settings (render.measure_floor), ``runs`` times."""
    from gateway.services.overlay.render import OverlayEncoding, measure_floor

    times = []
    with tempfile.TemporaryDirectory(prefix="floor-", dir=RESULTS) as tmp:
        for i in range(runs):
            out = Path(tmp) / f"floor-{i}.mp4"
            times.append(measure_floor(clip, out, OverlayEncoding.from_settings(settings)))
            out.unlink(missing_ok=True)
    return times


def run_predicts(base_url: str, video_url: str, requests: int, warmup: int, num_frames: int) -> list[dict[str, Any]]:
    """Sequential predictions; each row: client-side wall time and the gateway's stage timings."""
    rows = []
    with httpx.Client(base_url=base_url, timeout=600) as client:
        for i in range(warmup + requests):
            t0 = time.perf_counter()
            r = client.post("/api/v1/predict", json={"url": video_url, "heatmap": True, "num_frames": num_frames})
            wall = time.perf_counter() - t0
            r.raise_for_status()
            body = r.json()
            if body["errors"] or not body["output_url"]:
                raise RuntimeError(f"prediction incomplete: {body['errors']}")
            if i >= warmup:
                rows.append({"wall_s": wall, **body["timings"], "predicted_class": body["predicted_class"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gateway_bench", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=6)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--floor-runs", type=int, default=4)
    p.add_argument("--num-frames", type=int, default=32)
    p.add_argument(
        "--prefetch-mb",
        type=int,
        default=None,
        help="GATEWAY_RENDER_PREFETCH_MB (0: no read-ahead; default: the gateway's)",
    )
    a = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    clip = bench_clip()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # the gateway's defaults: output and encoder
    env = {"GATEWAY_HEATMAP": "true"}
    if a.prefetch_mb is not None:
        env["GATEWAY_RENDER_PREFETCH_MB"] = str(a.prefetch_mb)
    prefetch_mb = a.prefetch_mb if a.prefetch_mb is not None else settings.render_prefetch_mb
    with local_stack(clip.parent, RESULTS, "bench-gateway", env) as stack:
        # The floor before and after the predictions: the machine's speed drifts during a run.
        floor = measure_floor_s(clip, settings, (a.floor_runs + 1) // 2)
        rows = run_predicts(stack.gateway_url, f"{stack.media_url}/{clip.name}", a.requests, a.warmup, a.num_frames)
        floor += measure_floor_s(clip, settings, a.floor_runs // 2)
    walls = [r["wall_s"] for r in rows]
    floor_s = statistics.median(floor)
    report = {
        "clip": clip.name,
        "bytes": clip.stat().st_size,
        "num_frames": a.num_frames,
        "requests": a.requests,
        "render_prefetch_mb": prefetch_mb,
        "encoder": {"max_side": settings.output_max_side, "preset": settings.encoder_preset, "crf": settings.crf},
        "p50_s": pct(walls, 50),
        "p95_s": pct(walls, 95),
        "stages_median_s": {s: statistics.median(r[s] for r in rows) for s in STAGES},
        "floor_runs_s": floor,
        "floor_s": floor_s,
        "ratio_p50": pct(walls, 50) / floor_s,
        "target_ratio": TARGET_RATIO,
        "rows": rows,
    }
    (RESULTS / "bench-gateway.json").write_text(json.dumps(report, indent=2))
    print(
        f"full predict on {clip.name} ({report['bytes'] / 1e6:.1f} MB), T={a.num_frames}, Grad-CAM on, local storage, "
        f"render read-ahead {prefetch_mb} MB"
    )
    print(
        f"  requests {a.requests} (after {a.warmup} warm-up): p50 {report['p50_s']:.2f} s, p95 {report['p95_s']:.2f} s"
    )
    print("  per stage (median s): " + ", ".join(f"{s} {v:.2f}" for s, v in report["stages_median_s"].items()))
    enc = report["encoder"]
    print(
        f"  floor (decode + encode, max_side {enc['max_side']}, {enc['preset']}, crf {enc['crf']}): "
        f"median {floor_s:.2f} s of {', '.join(f'{x:.2f}' for x in floor)}"
    )
    verdict = "meets" if report["ratio_p50"] <= TARGET_RATIO else "misses"
    print(f"  ratio p50 / floor: {report['ratio_p50']:.2f}x ({verdict} the {TARGET_RATIO}x target)")
    print(f"written: {RESULTS / 'bench-gateway.json'}")


if __name__ == "__main__":
    main()
