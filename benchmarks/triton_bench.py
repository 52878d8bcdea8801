"""`make bench-triton`: latency and throughput of the deepfake_detector ensemble on a 10 s 1280x720 30 fps clip.

Starts the local Triton on free loopback ports (or uses --url), sends the clip at concurrency 1 and 4, and prints
p50/p95 latency, throughput, and each model's share of the server's compute time (from Triton's statistics).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from clients.triton_client import DetectorClient
from deepfake_core.paths import REPO_ROOT
from triton_runtime.process import TritonProcess

RESULTS = REPO_ROOT / "results"
MODELS = (
    "video_decode",
    "face_detector",
    "mtcnn_pnet",
    "mtcnn_rnet",
    "mtcnn_onet",
    "face_crop",
    "face_crop_images",
    "track_classifier",
    "temporal_classifier",
)


def bench_clip(seconds: float = 10.0, width: int = 1280, height: int = 720, fps: int = 30) -> Path:
    """The generated benchmark clip (cached under results/)."""
    from deepfake_core.sample_clip import hd_clip

    path = RESULTS / f"bench_{width}x{height}_{fps}fps_{seconds:g}s.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        hd_clip(path, seconds=seconds, width=width, height=height, fps=fps)
    return path


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def model_compute_ns(url: str) -> dict[str, int]:
    """Cumulative compute time (input + infer + output, ns) per model, from Triton's statistics."""
    client = grpcclient.InferenceServerClient(url)
    out = {}
    for name in MODELS:
        stats = client.get_inference_statistics(name, as_json=True)["model_stats"][0]["inference_stats"]
        out[name] = sum(int(stats[k].get("ns", 0)) for k in ("compute_input", "compute_infer", "compute_output"))
    client.close()
    return out


def run_level(url: str, video: bytes, concurrency: int, requests: int, num_frames: int) -> dict[str, Any]:
    """Send `requests` videos with `concurrency` in flight; latencies in seconds."""
    clients = [DetectorClient(url, "grpc") for _ in range(concurrency)]

    def worker(k: int) -> list[float]:
        lat = []
        for _ in range(k, requests, concurrency):
            t0 = time.perf_counter()
            clients[k].detect(video, num_frames)
            lat.append(time.perf_counter() - t0)
        return lat

    before = model_compute_ns(url)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = [x for part in pool.map(worker, range(concurrency)) for x in part]
    wall = time.perf_counter() - t0
    after = model_compute_ns(url)
    for c in clients:
        c.close()
    spent = {m: (after[m] - before[m]) / 1e9 for m in MODELS}
    # face_detector's own time includes the BLS calls it waits on; report its own share without them.
    spent["face_detector"] -= spent["mtcnn_pnet"] + spent["mtcnn_rnet"] + spent["mtcnn_onet"]
    spent["track_classifier"] -= spent["temporal_classifier"]  # likewise its BLS calls of the classifier
    total = sum(spent.values()) or 1.0
    return {
        "concurrency": concurrency,
        "requests": requests,
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "mean_s": statistics.fmean(latencies),
        "throughput_videos_per_s": requests / wall,
        "model_seconds_per_video": {m: round(v / requests, 4) for m, v in spent.items()},
        "model_share": {m: round(v / total, 3) for m, v in spent.items()},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.triton_bench", description=__doc__.splitlines()[0])
    p.add_argument("--url", help="gRPC address of a running Triton (default: start a local one)")
    p.add_argument("--requests", type=int, default=12)
    p.add_argument("--num-frames", type=int, default=32)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    a = p.parse_args(argv)
    clip = bench_clip()
    video = clip.read_bytes()
    server = None if a.url else TritonProcess.on_free_ports(RESULTS / "bench-triton-server.log")
    with server or nullcontext():
        url = a.url or server.grpc_url  # type: ignore[union-attr]
        with DetectorClient(url, "grpc") as warm:
            for _ in range(2):
                warm.detect(video, a.num_frames)
        levels = [run_level(url, video, c, a.requests, a.num_frames) for c in a.concurrency]
    report = {"clip": clip.name, "bytes": len(video), "num_frames": a.num_frames, "levels": levels}
    (RESULTS / "bench-triton.json").write_text(json.dumps(report, indent=2))
    print(f"deepfake_detector on {clip.name} ({len(video) / 1e6:.1f} MB), T={a.num_frames}")
    print(f"{'concurrency':>11} {'p50 s':>7} {'p95 s':>7} {'videos/s':>9}")
    for lv in levels:
        print(f"{lv['concurrency']:>11} {lv['p50_s']:>7.3f} {lv['p95_s']:>7.3f} {lv['throughput_videos_per_s']:>9.2f}")
    print("share of server compute time per model (concurrency 1):")
    for m, share in levels[0]["model_share"].items():
        print(f"  {m:<20} {share:>6.1%}  {levels[0]['model_seconds_per_video'][m]:.3f} s/video")
    print(f"written: {RESULTS / 'bench-triton.json'}")


if __name__ == "__main__":
    main()
