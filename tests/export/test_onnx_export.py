"""ONNX export: files, ORT == torch, incremental skips, --force, the all-or-nothing guard, checkpoints."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from deepfake_core import served_identity
from deepfake_core.checkpoint import checkpoint_digest, load_checkpoint, save_checkpoint
from deepfake_core.classifier import (
    VIT_ARCH,
    Classifier,
    ExportWrapper,
    build_classifier,
    untrained_classifier,
)
from deepfake_core.constants import CROP_SIZE, DECISION_THRESHOLD, NUM_FRAMES, UNTRAINED_VERSION
from deepfake_core.mtcnn import load_mtcnn
from deepfake_core.paths import BUNDLED_CHECKPOINT, MODEL_REPOSITORY
from deepfake_core.served_identity import ServedIdentity
from export import onnx_export, quantize
from export.__main__ import main
from export.onnx_export import MODEL_NAMES, ExportCheckError, QuantizationError, classifier_configs, export_models
from training.pretrained import load_imagenet

SMALL = {"width_mult": 0.25, "depth_mult": 0.34}


def _files(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()}


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with everything exported once (untrained classifier)."""
    path = tmp_path_factory.mktemp("model_repository")
    assert export_models(path, checkpoint=None, log=lambda _: None) == dict.fromkeys(MODEL_NAMES, "exported")
    return path


def test_writes_exactly_the_expected_files(repo: Path) -> None:
    expected = {f"{m}/1/{f}" for m in MODEL_NAMES for f in ("model.onnx", ".export-stamp.json")}
    expected.add("temporal_classifier/1/metadata.json")
    assert set(_files(repo)) == expected
    for name in MODEL_NAMES:
        stamp = json.loads((repo / name / "1" / ".export-stamp.json").read_text())
        assert stamp["model"] == name and stamp["inputs"]["torch"] == torch.__version__
        assert stamp["max_abs_diff"] <= 1e-4


def test_tensor_names_and_dynamic_axes(repo: Path) -> None:
    def signature(name: str) -> tuple[dict[str, list[object]], dict[str, list[object]]]:
        graph = onnx.load(str(repo / name / "1" / "model.onnx")).graph
        dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
        return {v.name: dims(v) for v in graph.input}, {v.name: dims(v) for v in graph.output}

    inputs, outputs = signature("mtcnn_pnet")
    assert inputs == {"image": ["batch", 3, "height", "width"]} and list(outputs) == ["prob", "reg"]
    inputs, outputs = signature("mtcnn_rnet")
    assert inputs == {"image": ["batch", 3, 24, 24]} and list(outputs) == ["prob", "reg"]
    inputs, outputs = signature("mtcnn_onet")
    assert inputs == {"image": ["batch", 3, 48, 48]} and list(outputs) == ["prob", "reg", "landmarks"]
    inputs, outputs = signature("temporal_classifier")
    assert inputs == {
        "FACES": ["batch", "frames", 3, CROP_SIZE, CROP_SIZE],
        "FACE_MASK": ["batch", "frames"],
    }
    assert outputs == {
        "PROB_FAKE": ["batch", 1],
        "VIDEO_LOGIT": ["batch", 1],
        "FRAME_SCORES": ["batch", "frames"],
        "FEATURE_MAPS": ["batch", "frames", 1280, 7, 7],
    }


def test_mtcnn_onnx_equals_torch(repo: Path) -> None:
    pnet, rnet, onet = load_mtcnn()
    rng = np.random.default_rng(5)
    cases = [
        ("mtcnn_pnet", pnet, (2, 3, 123, 77)),
        ("mtcnn_rnet", rnet, (7, 3, 24, 24)),
        ("mtcnn_onet", onet, (3, 3, 48, 48)),
    ]
    for name, net, shape in cases:
        x = rng.uniform(-1, 1, size=shape).astype(np.float32)
        got = _session(repo / name / "1" / "model.onnx").run(None, {"image": x})
        with torch.no_grad():
            want = net(torch.from_numpy(x))
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)


def assert_float16_close(got: np.ndarray, want: np.ndarray) -> None:
    """FEATURE_MAPS leave the graph as float16: compared relative to the tensor's range, as the export check does."""
    assert got.dtype == want.dtype == np.float16
    diff = np.abs(got.astype(np.float32) - want.astype(np.float32)).max()
    assert diff <= 2e-3 * max(1.0, float(np.abs(want.astype(np.float32)).max())), diff


def assert_onnx_equals_torch(onnx_path: Path, model: Classifier, faces: np.ndarray, mask: np.ndarray) -> None:
    """The exported classifier answers as ``ExportWrapper(model)`` does on the same inputs."""
    got = _session(onnx_path).run(None, {"FACES": faces, "FACE_MASK": mask})
    with torch.no_grad():
        want = ExportWrapper(model).eval()(torch.from_numpy(faces), torch.from_numpy(mask))
    for g, w in zip(got[:3], want[:3], strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)
    assert_float16_close(got[3], want[3].numpy())


def test_classifier_onnx_equals_torch(repo: Path) -> None:
    rng = np.random.default_rng(11)
    faces = rng.normal(0.0, 1.0, size=(2, 4, 3, CROP_SIZE, CROP_SIZE)).astype(np.float32)
    mask = np.array([[1, 0, 1, 1], [0, 0, 0, 0]], dtype=np.float32)
    prob, logit, scores, maps = _session(repo / "temporal_classifier" / "1" / "model.onnx").run(
        None, {"FACES": faces, "FACE_MASK": mask}
    )
    with torch.no_grad():
        want = ExportWrapper(untrained_classifier()).eval()(torch.from_numpy(faces), torch.from_numpy(mask))
    for g, w in zip((prob, logit, scores), want[:3], strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-4, rtol=0)
    assert_float16_close(maps, want[3].numpy())
    assert prob[1, 0] == 0.5 and logit[1, 0] == 0.0 and np.all(scores[1] == 0) and scores[0, 1] == 0


def test_metadata_json(repo: Path) -> None:
    meta = json.loads((repo / "temporal_classifier" / "1" / "metadata.json").read_text())
    assert meta["version"] == UNTRAINED_VERSION and meta["threshold"] == DECISION_THRESHOLD
    assert meta["num_frames"] == NUM_FRAMES and meta["arch"]["width_mult"] == 1.0
    assert meta["checkpoint_sha256"] is None
    # exported without INT8 (export_models' default): float32 on purpose, and it says so
    assert (
        meta["precision"] == "fp32"
        and meta["precision_reason"] == "fp32: asked for (--precision fp32, quantisation off)"
    )
    assert "quantization" not in meta


def test_second_run_skips_and_force_reexports(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _files(repo)
    # the fixture exported the untrained model in float32 (export_models' default; the CLI's is to try INT8)
    assert main(["--model-repository", str(repo), "--untrained", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == len(MODEL_NAMES) and "exported" not in out
    assert _files(repo) == before

    stamp_path = repo / "mtcnn_pnet" / "1" / ".export-stamp.json"
    assert main(["--model-repository", str(repo), "--force", "--only", "mtcnn_pnet"]) == 0
    assert "exported mtcnn_pnet" in capsys.readouterr().out
    after = _files(repo)
    assert after[str(stamp_path.relative_to(repo))] != before[str(stamp_path.relative_to(repo))]
    assert {k: v for k, v in after.items() if "mtcnn_pnet" not in k} == {
        k: v for k, v in before.items() if "mtcnn_pnet" not in k
    }


def test_changed_inputs_trigger_reexport(repo: Path) -> None:
    stamp_path = repo / "mtcnn_rnet" / "1" / ".export-stamp.json"
    stamp = json.loads(stamp_path.read_text())
    stamp["digest"] = "0" * 64  # as if a source file, the weights or torch had changed
    stamp_path.write_text(json.dumps(stamp))
    assert export_models(repo, None, only=["mtcnn_rnet"], log=lambda _: None) == {"mtcnn_rnet": "exported"}
    (repo / "mtcnn_onet" / "1" / "model.onnx").unlink()  # a missing output is re-created
    assert export_models(repo, None, only=["mtcnn_onet"], log=lambda _: None) == {"mtcnn_onet": "exported"}


def test_failed_check_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_export, "ATOL", -1.0)
    repo = tmp_path / "repo"
    with pytest.raises(ExportCheckError, match="ONNX Runtime differs from torch"):
        export_models(repo, None, only=["mtcnn_pnet"], log=lambda _: None)
    assert not repo.exists()
    assert main(["--model-repository", str(repo), "--only", "mtcnn_onet"]) == 1
    assert not repo.exists()


def test_failed_check_keeps_the_previous_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    export_models(repo, None, only=["mtcnn_rnet"], log=lambda _: None)
    before = _files(repo)
    monkeypatch.setattr(onnx_export, "ATOL", -1.0)
    with pytest.raises(ExportCheckError):
        export_models(repo, None, force=True, only=["mtcnn_rnet"], log=lambda _: None)
    assert _files(repo) == before  # same files, same bytes, no temp file left


def test_checkpoint_export(tmp_path: Path) -> None:
    model = untrained_classifier(SMALL)
    ckpt = save_checkpoint(tmp_path / "small.pt", model, {"version": "small-1", "threshold": 0.37})
    repo = tmp_path / "repo"

    def export() -> dict[str, str]:
        return export_models(repo, ckpt, only=["temporal_classifier"], log=lambda _: None)

    assert export() == {"temporal_classifier": "exported"}
    folder = repo / "temporal_classifier" / "1"
    meta = json.loads((folder / "metadata.json").read_text())
    # The checkpoint's threshold is folded into the served score: PROB_FAKE >= 0.5 means FAKE.
    assert meta["version"] == "small-1" and meta["arch"]["width_mult"] == 0.25
    assert meta["threshold"] == DECISION_THRESHOLD == 0.5 and meta["threshold_folded"] == 0.37
    assert meta["checkpoint_sha256"] == checkpoint_digest(ckpt)

    faces = np.random.default_rng(2).normal(size=(1, 7, 3, CROP_SIZE, CROP_SIZE)).astype(np.float32)
    shifted = copy.deepcopy(model)
    shifted.affine_logits(1.0, -math.log(0.37 / 0.63))
    assert_onnx_equals_torch(folder / "model.onnx", shifted, faces, np.ones((1, 7), dtype=np.float32))
    with torch.no_grad():
        raw = torch.sigmoid(model(torch.from_numpy(faces), torch.ones(1, 7)).video_logit).item()
    served = _session(folder / "model.onnx").run(["PROB_FAKE"], {"FACES": faces, "FACE_MASK": np.ones((1, 7), "f4")})
    assert (served[0][0, 0] >= 0.5) == (raw >= 0.37)

    assert export() == {"temporal_classifier": "skipped"}
    save_checkpoint(ckpt, model, {"version": "small-2", "threshold": 0.37})  # new content: new digest
    assert export() == {"temporal_classifier": "exported"}
    assert json.loads((folder / "metadata.json").read_text())["version"] == "small-2"


def _export_checkpoint(tmp_path: Path, model: Classifier, metadata: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Save ``model`` as a checkpoint, export it alone into a fresh repository: (its version folder, metadata.json)."""
    ckpt = save_checkpoint(tmp_path / "model.pt", model, metadata)
    assert export_models(tmp_path / "repo", ckpt, only=["temporal_classifier"], log=lambda _: None) == {
        "temporal_classifier": "exported"
    }
    folder = tmp_path / "repo" / "temporal_classifier" / "1"
    return folder, json.loads((folder / "metadata.json").read_text())


def test_imagenet_lite0_checkpoint_export(tmp_path: Path) -> None:
    """The EfficientNet-Lite0 encoder (TF padding, ReLU6, input mapping) from its ImageNet weights: ONNX equals
    torch on the served signature."""
    model = untrained_classifier({"backbone": "effnet_lite0"})
    load_imagenet(model)
    folder, meta = _export_checkpoint(tmp_path, model.eval(), {"version": "lite-1"})
    assert meta["arch"]["backbone"] == "effnet_lite0"
    faces = np.random.default_rng(5).normal(size=(2, 3, 3, CROP_SIZE, CROP_SIZE)).astype(np.float32)
    assert_onnx_equals_torch(folder / "model.onnx", model, faces, np.array([[1, 1, 0], [1, 1, 1]], np.float32))


def test_vit_frame_mean_checkpoint_export(tmp_path: Path) -> None:
    """The vit_frame_mean arch (frozen DINOv2 ViT-S/14 from its package + a linear frame head, head-only checkpoint):
    ONNX equals torch on the served signature, FEATURE_MAPS are the patch-token maps."""
    model = build_classifier(VIT_ARCH, pretrained=True).eval()
    with torch.no_grad():
        model.frame_head.weight.copy_(torch.linspace(-0.05, 0.05, model.frame_head.in_features)[None])
    folder, meta = _export_checkpoint(tmp_path, model, {"version": "vit-1", "threshold": 0.5})
    assert meta["arch"]["name"] == "vit_frame_mean"
    faces = np.random.default_rng(6).normal(size=(2, 3, 3, CROP_SIZE, CROP_SIZE)).astype(np.float32)
    assert_onnx_equals_torch(folder / "model.onnx", model, faces, np.array([[1, 1, 0], [0, 0, 0]], np.float32))


def test_checkpoint_with_other_preprocessing_is_refused(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "m.pt", untrained_classifier(SMALL), {"crop_size": 256})
    repo = tmp_path / "repo"
    with pytest.raises(ValueError, match="crop_size"):
        export_models(repo, ckpt, only=["temporal_classifier"], log=lambda _: None)
    assert not repo.exists()


def test_unknown_model_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model"):
        export_models(tmp_path, None, only=["mtcnn_xnet"])
    with pytest.raises(SystemExit):
        main(["--only", "mtcnn_xnet"])


# --- INT8: the served precision and its reason; a failure that is not the gate's refusal fails the export --------


def _small_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "small.pt", untrained_classifier(SMALL), {"version": "small-q"})


def _gate_report(delta: float) -> dict[str, object]:
    return {"settings": {}, "gate_videos": 8, "gate_max_abs_prob_delta": delta, "gate_limit": 0.02}


def test_int8_refused_by_its_gate_serves_fp32_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantize, "quantize_with_gate", lambda fp32, out: (False, _gate_report(0.259)))
    repo = tmp_path / "repo"
    export_models(repo, _small_checkpoint(tmp_path), only=["temporal_classifier"], log=lambda _: None, quantize=True)
    folder = repo / "temporal_classifier" / "1"
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["precision"] == "fp32" and meta["quantization"]["gate_max_abs_prob_delta"] == 0.259
    assert meta["precision_reason"] == (
        "fp32: the INT8 gate refused (|delta PROB_FAKE| 0.259 > 0.02 on 8 generated clips)"
    )
    assert not (folder / "model.fp32.onnx").exists()


def test_int8_passing_its_gate_is_served_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def accept(fp32: Path, out: Path) -> tuple[bool, dict[str, object]]:
        out.write_bytes(fp32.read_bytes())  # stands in for the INT8 graph
        return True, _gate_report(0.004)

    monkeypatch.setattr(quantize, "quantize_with_gate", accept)
    repo = tmp_path / "repo"
    export_models(repo, _small_checkpoint(tmp_path), only=["temporal_classifier"], log=lambda _: None, quantize=True)
    folder = repo / "temporal_classifier" / "1"
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["precision"] == "int8" and (folder / "model.fp32.onnx").is_file()
    assert (
        meta["precision_reason"] == "int8: passed the INT8 gate (|delta PROB_FAKE| 0.004 <= 0.02 on 8 generated clips)"
    )


def test_int8_failure_other_than_the_gate_fails_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No quiet float32: the export raises, `python -m export` exits 1, and nothing is written for the classifier."""

    def broken(fp32: Path, out: Path) -> tuple[bool, dict[str, object]]:
        raise ModuleNotFoundError("No module named 'training'")

    monkeypatch.setattr(quantize, "quantize_with_gate", broken)
    ckpt = _small_checkpoint(tmp_path)
    repo = tmp_path / "repo"
    with pytest.raises(QuantizationError, match="INT8 could not be tried.*No module named 'training'"):
        export_models(repo, ckpt, only=["temporal_classifier"], log=lambda _: None, quantize=True)
    assert not repo.exists()

    argv = ["--model-repository", str(repo), "--checkpoint", str(ckpt), "--only", "temporal_classifier"]
    assert main(argv) == 1  # the CLI tries INT8 by default
    assert "export failed: temporal_classifier: INT8 could not be tried" in capsys.readouterr().err
    assert not repo.exists()

    # over a previous (float32) export: that export stays as it was, byte for byte, no temp file left
    export_models(repo, ckpt, only=["temporal_classifier"], log=lambda _: None)
    before = _files(repo)
    assert main(argv) == 1
    assert _files(repo) == before


def _served_parameters(config: Path) -> dict[str, str]:
    parsed = text_format.Parse(config.read_text(), mc.ModelConfig())
    return {k: v.string_value for k, v in parsed.parameters.items()}


def test_identity_goes_into_every_classifier_config(tmp_path: Path) -> None:
    """The export writes the served identity into config.pbtxt and configs/*.pbtxt (Triton reports it); nothing
    else in them changes, a re-export replaces the block, an up-to-date export touches nothing."""
    repo = tmp_path / "repo"
    source = MODEL_REPOSITORY / "temporal_classifier"
    (repo / "temporal_classifier" / "configs").mkdir(parents=True)
    configs = [Path("config.pbtxt"), *(p.relative_to(source) for p in sorted((source / "configs").glob("*.pbtxt")))]
    assert len(configs) >= 3
    for rel in configs:
        shutil.copy(source / rel, repo / "temporal_classifier" / rel)
    ckpt = save_checkpoint(
        tmp_path / "small.pt", untrained_classifier(SMALL), {"version": "small-id", "threshold": 0.37}
    )
    assert export_models(repo, ckpt, only=["temporal_classifier"], log=lambda _: None)
    for rel in configs:
        path = repo / "temporal_classifier" / rel
        identity = ServedIdentity.from_parameters(_served_parameters(path))
        assert identity == ServedIdentity(
            version="small-id",
            checkpoint_sha256=checkpoint_digest(ckpt),
            precision="fp32",
            threshold=0.5,
            threshold_folded=0.37,
            checkpoint_path=str(ckpt.resolve()),
            precision_reason="fp32: asked for (--precision fp32, quantisation off)",
        ), rel
        # the rest of the file is the tracked one
        assert _without_block(path.read_text()) == _without_block((source / rel).read_text())
        assert path.read_text().count(served_identity.BEGIN) == 1

    config = repo / "temporal_classifier" / "config.pbtxt"
    before = config.stat().st_mtime_ns
    assert export_models(repo, ckpt, only=["temporal_classifier"], log=lambda _: None) == {
        "temporal_classifier": "skipped"
    }
    assert config.stat().st_mtime_ns == before  # unchanged identity: Triton in poll mode has nothing to reload

    save_checkpoint(ckpt, untrained_classifier(SMALL), {"version": "small-id-2"})
    export_models(repo, ckpt, only=["temporal_classifier"], log=lambda _: None)
    identity = ServedIdentity.from_parameters(_served_parameters(config))
    assert identity is not None and identity.version == "small-id-2" and identity.threshold_folded is None
    assert identity.checkpoint_sha256 == checkpoint_digest(ckpt)
    assert config.read_text().count(served_identity.BEGIN) == 1


def _without_block(text: str) -> str:
    start, end = text.find(served_identity.BEGIN), text.find(served_identity.END)
    return text if start < 0 else text[:start] + text[end + len(served_identity.END) + 1 :]


def test_tracked_configs_carry_the_bundled_checkpoint() -> None:
    """`make export` with the defaults leaves the tracked configs as they are: they name weights/classifier.pt
    (after new bundled weights, run `make export` and commit the configs it rewrote)."""
    meta = load_checkpoint(BUNDLED_CHECKPOINT)[1]
    for config in classifier_configs(MODEL_REPOSITORY / "temporal_classifier"):
        identity = ServedIdentity.from_parameters(_served_parameters(config))
        assert identity is not None, config
        assert identity.checkpoint_sha256 == checkpoint_digest(BUNDLED_CHECKPOINT), config
        assert identity.version == meta["version"] and identity.checkpoint_path == "weights/classifier.pt"
