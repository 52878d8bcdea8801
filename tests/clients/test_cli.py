"""`python -m clients`: the command-line client against the real local Triton."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.media import face_video
from triton_runtime.process import TritonProcess, free_port


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clients", *args], capture_output=True, text=True, timeout=120)


def test_cli_prints_the_verdict_over_grpc_and_http(triton: TritonProcess, tmp_path: Path) -> None:
    video = tmp_path / "face.mp4"
    face_video(video, width=480, height=270, fps=25, seconds=1.0)
    for protocol, url in (("grpc", triton.grpc_url), ("http", triton.http_url)):
        done = run_cli(str(video), "--protocol", protocol, "--url", url, "--num-frames", "8")
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["predicted_class"] in ("REAL", "FAKE")
        assert answer["frames_analyzed"] == 8 and answer["faces_detected"] >= 7
        # the per-face results (issue 14): one face, which decides
        assert [f["track_id"] for f in answer["faces"]] == [0] and answer["deciding_face"] == 0
        assert answer["faces"][0]["probability_fake"] == answer["probability_fake"]


def test_cli_reports_a_rejected_video(triton: TritonProcess, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    done = run_cli(str(junk), "--url", triton.grpc_url)
    assert done.returncode == 2
    assert "video rejected" in done.stderr


def test_cli_reports_a_server_that_is_down(tmp_path: Path) -> None:
    video = tmp_path / "face.mp4"
    face_video(video, width=320, height=180, fps=25, seconds=0.4)
    for protocol in ("grpc", "http"):
        done = run_cli(str(video), "--protocol", protocol, "--url", f"127.0.0.1:{free_port()}", "--timeout", "5")
        assert done.returncode == 3, (protocol, done.stdout, done.stderr)
        assert "unavailable" in done.stderr


def test_cli_asks_for_and_prints_only_the_chosen_outputs(triton: TritonProcess, tmp_path: Path) -> None:
    video = tmp_path / "face.mp4"
    face_video(video, width=480, height=270, fps=25, seconds=1.0)
    for protocol, url in (("grpc", triton.grpc_url), ("http", triton.http_url)):
        done = run_cli(str(video), "--protocol", protocol, "--url", url, "--num-frames", "6", "--outputs", "PROB_FAKE")
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert list(answer) == ["PROB_FAKE"] and len(answer["PROB_FAKE"]) == 1
        assert 0.0 <= answer["PROB_FAKE"][0] <= 1.0
    done = run_cli(str(video), "--url", triton.grpc_url, "--num-frames", "6", "--outputs", "face_crops,FACE_FOUND")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer == {"FACE_CROPS": {"shape": [6, 224, 224, 3], "dtype": "uint8"}, "FACE_FOUND": [True]}


def test_cli_refuses_an_unknown_output_before_calling_triton(tmp_path: Path) -> None:
    video = tmp_path / "face.mp4"
    video.write_bytes(b"not read")
    done = run_cli(str(video), "--url", f"127.0.0.1:{free_port()}", "--outputs", "PROB_FAKE,VERDICT")
    assert done.returncode == 2
    assert "--outputs takes one or more of" in done.stderr and "FACE_CROPS" in done.stderr
