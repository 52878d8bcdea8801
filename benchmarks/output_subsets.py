"""`python -m benchmarks.output_subsets`: what asking the ensemble for fewer outputs saves (issue 13).

Sends the `make bench-triton` clip at concurrency 1 asking for each output set in turn (round robin, so load drift
on a shared machine hits every set alike) and prints, per set: p50 latency, bytes of the answer, and the server's
compute seconds per video of the steps that differ (Triton's statistics). `--model-repository` runs the same against
another repository, e.g. an export of the layout before issue 13's fix; sets that repository cannot answer are
reported as failing.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from benchmarks.triton_bench import RESULTS, bench_clip
from clients.triton_client import DetectorClient, ServerUnavailableError, VideoRejectedError
from deepfake_core.ensemble_contract import ALL_OUTPUTS, TRACK_MAPS_OUTPUT, VERDICT_OUTPUTS
from triton_runtime.process import TritonProcess
from triton_runtime.server import DEFAULT_MODEL_REPOSITORY, ServerOptions

OUTPUT_SETS: dict[str, tuple[str, ...]] = {
    "all outputs": ALL_OUTPUTS,
    "gateway (verdict + TRACK_FEATURE_MAPS)": (*VERDICT_OUTPUTS, TRACK_MAPS_OUTPUT),
    "verdict": VERDICT_OUTPUTS,
    "PROB_FAKE": ("PROB_FAKE",),
}
STEPS = ("face_crop", "face_crop_images", "track_classifier", "temporal_classifier")
STAGES = ("compute_input", "compute_infer", "compute_output")


def compute_s(client: grpcclient.InferenceServerClient) -> dict[str, float]:
    """Cumulative compute seconds of STEPS (input + infer + output), and of "<step> output" (handing the outputs
    over: what producing an unrequested output costs a Python model); 0 for a model the repository lacks."""
    out = {}
    for name in STEPS:
        try:
            stats = client.get_inference_statistics(name, as_json=True)["model_stats"][0]["inference_stats"]
        except InferenceServerException:
            stats = {}
        ns = {k: int(stats.get(k, {}).get("ns", 0)) for k in STAGES}
        out[name] = sum(ns.values()) / 1e9
        out[f"{name} output"] = ns["compute_output"] / 1e9
    return out


def measure(url: str, video: bytes, num_frames: int, rounds: int) -> dict[str, dict[str, Any]]:
    """`rounds` requests per output set, round robin; per set p50 latency, answer bytes, compute s/video."""
    stats = grpcclient.InferenceServerClient(url)
    latencies: dict[str, list[float]] = {name: [] for name in OUTPUT_SETS}
    columns = [*STEPS, *(f"{s} output" for s in STEPS)]
    spent = {name: dict.fromkeys(columns, 0.0) for name in OUTPUT_SETS}
    sizes: dict[str, int] = {}
    failed: dict[str, str] = {}
    with DetectorClient(url, "grpc") as client:
        for _ in range(rounds):
            for name, outputs in OUTPUT_SETS.items():
                if name in failed:
                    continue
                before = compute_s(stats)
                t0 = time.perf_counter()
                try:
                    answer = client.infer(video, outputs, num_frames)
                except (VideoRejectedError, ServerUnavailableError) as exc:
                    failed[name] = str(exc)
                    continue
                latencies[name].append(time.perf_counter() - t0)
                after = compute_s(stats)
                for column in columns:
                    spent[name][column] += after[column] - before[column]
                sizes[name] = sum(v.nbytes for v in answer.values())
    stats.close()
    report: dict[str, dict[str, Any]] = {}
    for name in OUTPUT_SETS:
        if name in failed:
            report[name] = {"error": failed[name]}
            continue
        n = len(latencies[name])
        report[name] = {
            "p50_s": float(np.percentile(latencies[name], 50)),
            "answer_bytes": sizes[name],
            "compute_s_per_video": {s: round(v / n, 4) for s, v in spent[name].items()},
        }
    return report


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.output_subsets", description=__doc__.splitlines()[0])
    p.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--num-frames", type=int, default=32)
    p.add_argument("--label", default="current")
    a = p.parse_args(argv)
    video = bench_clip().read_bytes()
    options = ServerOptions(model_repository=a.model_repository.resolve())
    with TritonProcess.on_free_ports(RESULTS / f"output-subsets-{a.label}-server.log", options) as server:
        with DetectorClient(server.grpc_url, "grpc") as warm:
            warm.infer(video, ALL_OUTPUTS, a.num_frames)
        report = measure(server.grpc_url, video, a.num_frames, a.rounds)
    (RESULTS / f"output-subsets-{a.label}.json").write_text(json.dumps(report, indent=2))
    print(f"{a.label}: {a.model_repository}, T={a.num_frames}, {a.rounds} requests per set, concurrency 1")
    columns = [*STEPS, "face_crop output"]
    print(f"{'outputs':<34} {'p50 s':>6} {'answer kB':>9}  compute s/video: " + ", ".join(columns))
    for name, row in report.items():
        if "error" in row:
            print(f"{name:<34} fails: {row['error'][:80]}")
            continue
        steps = row["compute_s_per_video"]
        print(
            f"{name:<34} {row['p50_s']:>6.3f} {int(row['answer_bytes']) / 1e3:>9.1f}  "
            + "  ".join(f"{steps[c]:.4f}" for c in columns)
        )


if __name__ == "__main__":
    main()
