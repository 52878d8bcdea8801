"""TritonUser's gRPC calls must not block Locust's other users (greenlets): grpc's gevent mode is on."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.media import face_video
from triton_runtime.process import TritonProcess

# Never import locust here: it monkey-patches the whole process (pytest's too). Only look whether it is installed.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None,
    reason="the loadtest extra (locust) is not installed: pip install -e '.[loadtest]'",
)


def probe(url: str, clip: Path, *flags: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.loadtests.gevent_probe", url, str(clip), *flags],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_grpc_call_lets_other_greenlets_run(triton: TritonProcess, tmp_path: Path) -> None:
    clip = tmp_path / "face.mp4"
    face_video(clip, width=640, height=360, fps=25, seconds=2.0)
    patched = probe(triton.grpc_url, clip)
    # A 50 ms ticker: at least a quarter of its ticks during the call, even on a loaded machine.
    assert patched["ticks_during"] >= max(2, 0.25 * patched["call_s"] / 0.05), patched
    # The control: without grpc's gevent mode the same call blocks the ticker (so the check above can fail).
    blocked = probe(triton.grpc_url, clip, "--no-init")
    assert blocked["ticks_during"] <= 1, blocked
