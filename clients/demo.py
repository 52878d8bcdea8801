"""`make demo`: analyse a generated sample video end to end with embedded defaults.

Uses the Triton at --url when it is up (e.g. `make triton` in another terminal), else starts a local one on free
loopback ports for the duration of the demo.
"""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext
from pathlib import Path

from clients.triton_client import DetectorClient
from triton_runtime.process import TritonProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "results" / "demo"


def sample_video() -> Path:
    """A 3 s 640x360 face video generated from skimage's public-domain astronaut image."""
    from tests.media import face_video

    path = DEMO_DIR / "sample_face.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        face_video(path, width=640, height=360, fps=25, seconds=3.0)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m clients.demo", description=__doc__.splitlines()[0])
    p.add_argument("--url", default="127.0.0.1:8001", help="gRPC address of a running Triton")
    p.add_argument("video", nargs="?", type=Path, help="a video file (default: a generated sample)")
    a = p.parse_args(argv)
    video = a.video or sample_video()
    with DetectorClient(a.url) as probe:
        running = probe.ready()
    server = None if running else TritonProcess.on_free_ports(DEMO_DIR / "triton.log")
    if server:
        print(f"starting a local Triton (log: {server.log_path}) ...", flush=True)
    with server or nullcontext():
        url = server.grpc_url if server else a.url
        with DetectorClient(url) as client:
            result = client.detect(video.read_bytes())
    print(f"video: {video}")
    print(json.dumps(result.to_json(), indent=2))


if __name__ == "__main__":
    main()
