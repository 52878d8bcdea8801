"""`python -m benchmarks.faces_bench`: what each extra face in a video costs (issue 14).

Generated 720p clips (10 s, 30 fps, like `make bench-triton`'s) with 1, 2 and 4 people (tests/people_media.py), sent
at concurrency 1, round robin (so load drift on a shared machine hits every clip alike), asking for what the gateway
asks (the verdict outputs, with or without every face's feature maps). Prints per clip: p50 latency and the server's
compute seconds per video of the steps whose work grows with the faces (Triton's statistics; face_detector with the
MTCNN calls it waits on, track_classifier without the temporal_classifier calls, which are reported on their own).
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

from benchmarks.triton_bench import RESULTS
from clients.triton_client import DetectorClient
from deepfake_core.ensemble_contract import TRACK_MAPS_OUTPUT, VERDICT_OUTPUTS
from tests.people_media import Person, people_video
from triton_runtime.process import TritonProcess
from triton_runtime.server import DEFAULT_MODEL_REPOSITORY, ServerOptions

LAYOUTS: dict[int, tuple[Person, ...]] = {
    1: (Person(0.70, 0.5),),
    2: (Person(0.60, 0.27), Person(0.55, 0.73)),
    4: (Person(0.42, 0.13), Person(0.40, 0.38), Person(0.38, 0.63), Person(0.36, 0.88)),
}
STEPS = ("face_detector", "face_crop", "track_classifier", "temporal_classifier")
STAGES = ("compute_input", "compute_infer", "compute_output")


def clip(faces: int, seconds: float = 10.0, width: int = 1280, height: int = 720, fps: int = 30) -> Path:
    """The clip with `faces` people (cached under results/)."""
    path = RESULTS / f"faces{faces}_{width}x{height}_{fps}fps_{seconds:g}s.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        people_video(path, LAYOUTS[faces], width=width, height=height, fps=fps, seconds=seconds)
    return path


def compute_s(client: grpcclient.InferenceServerClient) -> dict[str, float]:
    """Cumulative compute seconds (input + infer + output) of STEPS."""
    out = {}
    for name in STEPS:
        stats = client.get_inference_statistics(name, as_json=True)["model_stats"][0]["inference_stats"]
        out[name] = sum(int(stats.get(k, {}).get("ns", 0)) for k in STAGES) / 1e9
    return out


def measure(url: str, videos: dict[int, bytes], outputs: tuple[str, ...], rounds: int) -> dict[int, dict[str, Any]]:
    stats = grpcclient.InferenceServerClient(url)
    latencies: dict[int, list[float]] = {f: [] for f in videos}
    spent = {f: dict.fromkeys(STEPS, 0.0) for f in videos}
    found: dict[int, int] = {}
    with DetectorClient(url, "grpc") as client:
        for _ in range(rounds):
            for faces, video in videos.items():
                before = compute_s(stats)
                t0 = time.perf_counter()
                answer = client.infer(video, outputs)
                latencies[faces].append(time.perf_counter() - t0)
                after = compute_s(stats)
                for step in STEPS:
                    spent[faces][step] += after[step] - before[step]
                own = after["temporal_classifier"] - before["temporal_classifier"]
                spent[faces]["track_classifier"] -= own  # its own work, not the BLS calls it waits on
                found[faces] = int(answer["TRACK_HAS_FACE"].any(axis=1).sum())
    stats.close()
    return {
        f: {
            "faces_analysed": found[f],
            "p50_s": float(np.percentile(latencies[f], 50)),
            "compute_s_per_video": {s: round(v / rounds, 4) for s, v in spent[f].items()},
        }
        for f in videos
    }


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faces_bench", description=__doc__.splitlines()[0])
    p.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--maps", action="store_true", help="also ask for TRACK_FEATURE_MAPS (the gateway with heatmaps)")
    a = p.parse_args(argv)
    videos = {f: clip(f).read_bytes() for f in LAYOUTS}
    outputs = (*VERDICT_OUTPUTS, TRACK_MAPS_OUTPUT) if a.maps else VERDICT_OUTPUTS
    options = ServerOptions(model_repository=a.model_repository.resolve())
    with TritonProcess.on_free_ports(RESULTS / "faces-bench-server.log", options) as server:
        with DetectorClient(server.grpc_url, "grpc") as warm:
            for video in videos.values():
                warm.infer(video, outputs)
        report = measure(server.grpc_url, videos, outputs, a.rounds)
    label = "verdict + TRACK_FEATURE_MAPS" if a.maps else "verdict"
    (RESULTS / f"faces-bench{'-maps' if a.maps else ''}.json").write_text(json.dumps(report, indent=2))
    print(f"720p 10 s clips, T=32, {a.rounds} requests per clip, concurrency 1, outputs: {label}")
    print(f"{'faces':>5} {'analysed':>8} {'p50 s':>6}  compute s/video: " + ", ".join(STEPS))
    for faces, row in report.items():
        steps = row["compute_s_per_video"]
        print(
            f"{faces:>5} {row['faces_analysed']:>8} {row['p50_s']:>6.3f}  "
            + "  ".join(f"{steps[s]:.3f}" for s in STEPS)
        )


if __name__ == "__main__":
    main()
