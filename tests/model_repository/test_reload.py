"""A re-export is served without a restart: the local Triton in poll mode (as `make triton` / `make serve` run it)."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clients.triton_client import DetectorClient
from deepfake_core.checkpoint import save_checkpoint
from deepfake_core.classifier import untrained_classifier
from deepfake_core.preprocess import normalize_crops
from export.onnx_export import export_models
from tests.media import face_video
from triton_runtime.process import TritonProcess
from triton_runtime.server import ServerOptions

SMALL = {"width_mult": 0.25, "depth_mult": 0.25}


def test_a_new_checkpoint_is_served_without_a_restart(model_repository: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repository, repo)
    video = tmp_path / "face.mp4"
    face_video(video, width=480, height=270, fps=25, seconds=1.0)
    data = video.read_bytes()
    options = ServerOptions(model_repository=repo, model_control_mode="poll", repository_poll_secs=1)
    with TritonProcess.on_free_ports(tmp_path / "triton.log", options) as server, DetectorClient(server.grpc_url) as c:
        before = c.detect(data, num_frames=8).prob_fake
        model = untrained_classifier(SMALL)
        checkpoint = save_checkpoint(tmp_path / "small.pt", model, {"version": "small-reload", "threshold": 0.4})
        export_models(repo, checkpoint, only=["temporal_classifier"], log=lambda _: None)
        deadline, after = time.monotonic() + 60, before
        while time.monotonic() < deadline and after == before:
            time.sleep(0.5)
            after = c.detect(data, num_frames=8).prob_fake  # never fails while the model is swapped
        result = c.detect(data, num_frames=8, with_crops=True)
    assert after != before, f"Triton still serves the old classifier:\n{server.log_tail()}"
    assert result.face_crops is not None
    faces = torch.from_numpy(normalize_crops(result.face_crops))[None]
    model.affine_logits(1.0, -math.log(0.4 / 0.6))  # the export folds the threshold 0.4 into the served score
    with torch.no_grad():
        logit = model(faces, torch.from_numpy(result.has_face.astype(np.float32))[None]).video_logit
    assert float(torch.sigmoid(logit)[0]) == pytest.approx(result.prob_fake, abs=1e-3)  # the new weights answer
