"""`python -m clients VIDEO_OR_URL`: send a video to the deepfake_detector ensemble and print the verdict as JSON.

It asks Triton only for what it prints: by default the outputs of the verdict JSON (JSON_OUTPUTS); with
`--outputs PROB_FAKE,FACE_FOUND` exactly those, printed as {name: value} (FACE_CROPS and FEATURE_MAPS as their
shape and data type).

Exit status: 0 printed, 2 video rejected (or unreadable, or an unknown output name), 3 server unavailable.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from clients.triton_client import DetectorClient, ServerUnavailableError, VideoRejectedError
from deepfake_core import constants as C
from deepfake_core.ensemble_contract import ALL_OUTPUTS, CROPS_OUTPUT, JSON_OUTPUTS, MAPS_OUTPUT

MAX_DOWNLOAD_BYTES = 500 * 1024 * 1024


def read_source(source: str, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
    """Bytes of a local file or of an http(s) URL (downloaded whole, up to max_bytes)."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=60) as r:
            data = r.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ValueError(f"{source} is larger than {max_bytes} bytes")
        return bytes(data)
    return Path(source).read_bytes()


def output_json(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Requested outputs as JSON values; the heavy ones as their shape and data type."""
    return {
        name: {"shape": list(value.shape), "dtype": str(value.dtype)}
        if name in (CROPS_OUTPUT, MAPS_OUTPUT)
        else value.tolist()
        for name, value in outputs.items()
    }


def parse_outputs(text: str | None) -> list[str] | None:
    """`--outputs A,B` as a list of names (None: the verdict JSON's outputs)."""
    if text is None:
        return None
    names = [n.strip().upper() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_OUTPUTS]
    if not names or unknown:
        raise ValueError(f"--outputs takes one or more of {','.join(ALL_OUTPUTS)} (got {text!r})")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clients", description=__doc__.splitlines()[0])
    p.add_argument("source", help="a video file or an http(s) URL")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--url", default=None, help="Triton address (default 127.0.0.1:8001 gRPC, 127.0.0.1:8000 HTTP)")
    p.add_argument("--num-frames", type=int, default=None, help=f"frames to analyse (default {C.NUM_FRAMES})")
    p.add_argument("--threshold", type=float, default=C.DECISION_THRESHOLD)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--outputs", default=None, help="comma-separated outputs to ask for and print (default: verdict)")
    a = p.parse_args(argv)
    url = a.url or ("127.0.0.1:8001" if a.protocol == "grpc" else "127.0.0.1:8000")
    try:
        outputs = parse_outputs(a.outputs)
        data = read_source(a.source)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read {a.source}: {exc}", file=sys.stderr)
        return 2
    try:
        with DetectorClient(url, a.protocol, a.timeout) as client:
            if outputs is not None:
                print(json.dumps(output_json(client.infer(data, outputs, a.num_frames))))
                return 0
            result = client.detect(data, a.num_frames, outputs=JSON_OUTPUTS)
    except VideoRejectedError as exc:
        print(f"error: video rejected: {exc}", file=sys.stderr)
        return 2
    except ServerUnavailableError as exc:
        print(f"error: Triton at {url} ({a.protocol}) is unavailable: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(result.to_json(a.threshold), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
