"""`make perf-analyzer`: NVIDIA perf_analyzer against the deepfake_detector ensemble on the local Triton.

perf_analyzer ships inside the `tritonclient==2.41.0` wheel (`bin/perf_analyzer`); `make perf-analyzer` installs it
into its own venv (`.perf-venv/`, with `nvidia-cuda-runtime-cu12` for libcudart.so.12 and Debian's libb64-0d) so the
project's tritonclient stays as it is. This script starts Triton on free loopback ports, writes the input files
perf_analyzer wants (the benchmark clip of `make bench-triton` as VIDEO, NUM_FRAMES as a little-endian int32), runs
concurrency 1 and 4 over gRPC, prints perf_analyzer's table, and stops Triton.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from benchmarks.triton_bench import RESULTS, bench_clip
from deepfake_core import constants as C
from deepfake_core.ensemble_contract import ENSEMBLE
from deepfake_core.paths import REPO_ROOT
from triton_runtime.process import TritonProcess

# Which steps ran tells which outputs perf_analyzer asked for (face_crop_images runs only for FACE_CROPS).
STEPS = ("video_decode", "face_crop", "face_crop_images", "temporal_classifier")


def perf_tools(venv: Path) -> tuple[Path, dict[str, str]]:
    """The perf_analyzer binary in `venv` and the environment it runs in (libcudart.so.12 from the venv)."""
    binary = venv / "bin" / "perf_analyzer"
    cudart = sorted(venv.glob("lib/python*/site-packages/nvidia/cuda_runtime/lib"))
    if not binary.exists() or not cudart:
        raise SystemExit(f"perf_analyzer or nvidia-cuda-runtime-cu12 missing in {venv}: run `make perf-analyzer`")
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(cudart[0]), env.get("LD_LIBRARY_PATH", "")) if p)
    return binary, env


def write_input_data(directory: Path, video: bytes, num_frames: int) -> None:
    """perf_analyzer's --input-data folder: one file per input, raw bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "VIDEO").write_bytes(video)
    (directory / "NUM_FRAMES").write_bytes(np.array([num_frames], "<i4").tobytes())


def perf_command(binary: Path, url: str, data_dir: Path, video_bytes: int, args: argparse.Namespace) -> list[str]:
    """perf_analyzer over gRPC at concurrency 1 and 4 (or --concurrency), counting windows of finished requests."""
    low, high = min(args.concurrency), max(args.concurrency)
    step = max(high - low, 1)
    return [
        str(binary),
        "-m",
        ENSEMBLE,
        "-u",
        url,
        "-i",
        "grpc",
        "--input-data",
        str(data_dir),
        "--shape",
        f"VIDEO:{video_bytes}",
        "--shape",
        "NUM_FRAMES:1",
        "--concurrency-range",
        f"{low}:{high}:{step}",
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        str(args.requests),
        "--stability-percentage",
        str(args.stability),
        "--max-trials",
        str(args.max_trials),
        "-f",
        str(RESULTS / "perf-analyzer.csv"),
    ]


def run_streaming(cmd: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `cmd`, printing its output (stdout and stderr together) as it comes; its exit status and the output."""
    lines = []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    return proc.returncode, "".join(lines)


def step_counts(url: str) -> dict[str, int]:
    """Triton's inference_count of the steps in STEPS."""
    client = grpcclient.InferenceServerClient(url)
    try:
        stats = {m: client.get_inference_statistics(m, as_json=True)["model_stats"][0] for m in STEPS}
    finally:
        client.close()
    return {m: int(s.get("inference_count", 0)) for m, s in stats.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf_analyzer", description=__doc__.splitlines()[0])
    p.add_argument("--perf-venv", type=Path, default=REPO_ROOT / ".perf-venv")
    p.add_argument("--num-frames", type=int, default=C.NUM_FRAMES)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    p.add_argument("--requests", type=int, default=8, help="finished requests per measurement window")
    p.add_argument("--stability", type=int, default=25, help="perf_analyzer --stability-percentage")
    p.add_argument("--max-trials", type=int, default=6)
    a = p.parse_args(argv)
    binary, env = perf_tools(a.perf_venv)
    clip = bench_clip()
    video = clip.read_bytes()
    data_dir = RESULTS / "perf-analyzer-input"
    write_input_data(data_dir, video, a.num_frames)
    load_before = os.getloadavg()
    with TritonProcess.on_free_ports(RESULTS / "perf-analyzer-server.log") as server:
        before = step_counts(server.grpc_url)
        cmd = perf_command(binary, server.grpc_url, data_dir, len(video), a)
        print(f"deepfake_detector on {clip.name} ({len(video) / 1e6:.1f} MB), NUM_FRAMES={a.num_frames}", flush=True)
        print("$ " + " ".join(cmd), flush=True)
        returncode, output = run_streaming(cmd, env)
        after = step_counts(server.grpc_url)
    (RESULTS / "perf-analyzer.txt").write_text(output)
    ran = ", ".join(f"{m} {after[m] - before[m]}" for m in STEPS)
    print(f"executions during the run: {ran}")
    load_after = os.getloadavg()
    print(
        f"load average (1/5/15 min) before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} on {os.cpu_count()} cores"
    )
    print(f"written: {RESULTS / 'perf-analyzer.txt'}, {RESULTS / 'perf-analyzer.csv'}")
    return returncode


if __name__ == "__main__":
    sys.exit(main())
