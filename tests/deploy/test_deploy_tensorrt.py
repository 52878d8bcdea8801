"""export.tensorrt: the trtexec command line, the Python-API build, the skip where TensorRT is absent, plan files.

TensorRT is absent here (no GPU): the builds run against a stand-in `trtexec` script and a stand-in `tensorrt`
module that record what they were asked, so the command construction and the file handling are real.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import onnx
import pytest

from deepfake_core import constants as C
from deepfake_core.mtcnn_cascade import DetectorParams
from export import tensorrt as trt_export
from export.tensorrt import ENGINE_SPECS, EngineSpec, InputProfile, build_engines, trtexec_command

REPO = Path(__file__).resolve().parents[2]
MODEL_REPOSITORY = REPO / "model_repository"

# A stand-in trtexec: records its argv as JSON next to the engine and writes a fake engine (or fails on request).
FAKE_TRTEXEC = """#!{python}
import json, os, sys
args = sys.argv[1:]
log = os.environ["FAKE_TRTEXEC_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(args) + "\\n")
if os.environ.get("FAKE_TRTEXEC_FAIL"):
    print("[E] Error[4]: fake failure")
    sys.exit(1)
engine = next(a.split("=", 1)[1] for a in args if a.startswith("--saveEngine="))
with open(engine, "wb") as f:
    f.write(b"fake-engine:" + next(a for a in args if a.startswith("--onnx=")).encode())
print("&&&& PASSED TensorRT.trtexec")
"""


@pytest.fixture
def fake_trtexec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `trtexec` on $TRTEXEC that records its calls in the returned log file."""
    exe = tmp_path / "bin" / "trtexec"
    exe.parent.mkdir()
    exe.write_text(FAKE_TRTEXEC.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "trtexec.log"
    monkeypatch.setenv("TRTEXEC", str(exe))
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    return log


@pytest.fixture
def onnx_repo(tmp_path: Path) -> Path:
    """A model repository with (fake) ONNX files for every engine spec."""
    repo = tmp_path / "repo"
    for name in ENGINE_SPECS:
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.onnx").write_bytes(b"onnx:" + name.encode())
    return repo


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_trtexec_command_has_fp16_and_the_profile_shapes() -> None:
    spec = ENGINE_SPECS["temporal_classifier"]
    cmd = trtexec_command("/opt/trtexec", Path("m/1/model.onnx"), Path("m/1/model.plan"), spec, workspace_mib=1024)
    t, s = C.MAX_NUM_FRAMES, C.CROP_SIZE
    assert cmd == [
        "/opt/trtexec",
        "--onnx=m/1/model.onnx",
        "--saveEngine=m/1/model.plan",
        "--fp16",
        f"--minShapes=FACES:1x1x3x{s}x{s},FACE_MASK:1x1",
        f"--optShapes=FACES:1x{C.NUM_FRAMES}x3x{s}x{s},FACE_MASK:1x{C.NUM_FRAMES}",
        f"--maxShapes=FACES:8x{t}x3x{s}x{s},FACE_MASK:8x{t}",
        "--memPoolSize=workspace:1024",
        "--skipInference",
    ]
    pnet = trtexec_command("trtexec", Path("a.onnx"), Path("a.plan"), ENGINE_SPECS["mtcnn_pnet"])
    assert "--minShapes=image:1x3x12x12" in pnet
    assert f"--maxShapes=image:64x3x{C.MTCNN_DETECT_MAX_SIDE}x{C.MTCNN_DETECT_MAX_SIDE}" in pnet
    # TensorRT 10 removed --workspace and --explicitBatch (implicit batch is gone): neither may appear.
    assert not any(a.startswith(("--workspace", "--explicitBatch", "--maxBatch")) for a in pnet)


def test_profiles_cover_what_the_service_sends() -> None:
    params = DetectorParams()
    assert ENGINE_SPECS["mtcnn_pnet"].max_batch_size >= params.pnet_max_batch
    assert ENGINE_SPECS["mtcnn_pnet"].inputs[0].max[2:] == (params.detect_max_side, params.detect_max_side)
    assert ENGINE_SPECS["mtcnn_pnet"].inputs[0].min[2:] == (12, 12)  # P-Net's window: the smallest pyramid level
    for net in ("mtcnn_rnet", "mtcnn_onet"):
        assert ENGINE_SPECS[net].max_batch_size >= params.max_batch
    faces, mask = ENGINE_SPECS["temporal_classifier"].inputs
    assert faces.max[1] == mask.max[1] == C.MAX_NUM_FRAMES
    assert faces.min[1] == mask.min[1] == 1
    assert faces.opt[1] == C.NUM_FRAMES


@pytest.mark.parametrize("name", sorted(ENGINE_SPECS))
def test_profiles_match_the_onnx_inputs(name: str, model_repository: Path) -> None:
    """Input names, ranks and the ONNX file's static dimensions agree with the profile (dynamic ones are free)."""
    model = onnx.load(str(model_repository / name / "1" / "model.onnx"), load_external_data=False)
    graph_inputs = {i.name: i for i in model.graph.input}
    spec = ENGINE_SPECS[name]
    assert [i.name for i in spec.inputs] == [i.name for i in model.graph.input]
    for profile in spec.inputs:
        dims = graph_inputs[profile.name].type.tensor_type.shape.dim
        assert len(dims) == len(profile.max), profile.name
        for k, dim in enumerate(dims):
            if dim.HasField("dim_value"):
                assert profile.min[k] == profile.opt[k] == profile.max[k] == dim.dim_value, (profile.name, k)


def test_invalid_profiles_are_refused() -> None:
    with pytest.raises(ValueError, match="min <= opt <= max"):
        InputProfile("x", (4, 3), (2, 3), (8, 3))
    with pytest.raises(ValueError, match="ranks"):
        InputProfile("x", (1, 3), (2, 3), (8, 3, 1))


def test_absent_tensorrt_raises_not_found(monkeypatch: pytest.MonkeyPatch, onnx_repo: Path) -> None:
    monkeypatch.delenv("TRTEXEC", raising=False)
    monkeypatch.setenv("PATH", str(onnx_repo))  # no trtexec there
    monkeypatch.setattr(trt_export, "TRTEXEC_FALLBACKS", ())
    monkeypatch.setattr(trt_export, "has_tensorrt_module", lambda: False)
    with pytest.raises(trt_export.TensorRTNotFound, match="TensorRT not found"):
        build_engines(onnx_repo, log=lambda _: None)
    assert not list(onnx_repo.rglob("*.plan")) and not list(onnx_repo.rglob("*.tmp"))


def test_absent_tensorrt_cli_skips_with_a_message(onnx_repo: Path, tmp_path: Path) -> None:
    """`python -m export.tensorrt` where TensorRT is absent (as here): exit 0, a message saying what was skipped."""
    if any(p.exists() for p in trt_export.TRTEXEC_FALLBACKS) or trt_export.has_tensorrt_module():
        pytest.skip("TensorRT is installed on this machine: the absent path cannot be observed end to end")
    env = {k: v for k, v in os.environ.items() if k != "TRTEXEC"}
    env["PATH"] = str(tmp_path)  # nothing to find on PATH
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "export.tensorrt", "--model-repository", str(onnx_repo)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "TensorRT engines skipped: TensorRT not found" in proc.stderr
    assert "configs/gpu.pbtxt" in proc.stderr
    assert not list(onnx_repo.rglob("*.plan"))


def test_export_main_tensorrt_flag_calls_the_builder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`python -m export --tensorrt`: the ONNX export, then the engines of the same models (export itself stubbed)."""
    import export.__main__ as export_main

    calls: list[tuple[str, Any]] = []

    def fake_export(repo: Path, checkpoint: Path | None, **kw: Any) -> dict[str, str]:
        calls.append(("onnx", kw["only"]))
        return {}

    def fake_run(repo: Path, only: list[str] | None = None, force: bool = False) -> int:
        calls.append(("trt", only))
        return 0

    monkeypatch.setattr(export_main, "export_models", fake_export)
    monkeypatch.setattr(trt_export, "run", fake_run)
    assert export_main.main(["--model-repository", str(tmp_path), "--only", "mtcnn_rnet", "--tensorrt"]) == 0
    assert calls == [("onnx", ["mtcnn_rnet"]), ("trt", ["mtcnn_rnet"])]
    calls.clear()
    assert export_main.main(["--model-repository", str(tmp_path), "--only", "mtcnn_rnet"]) == 0
    assert calls == [("onnx", ["mtcnn_rnet"])]


def test_trtexec_builds_every_plan_then_skips_up_to_date(fake_trtexec: Path, onnx_repo: Path) -> None:
    assert build_engines(onnx_repo, log=lambda _: None) == dict.fromkeys(ENGINE_SPECS, "built")
    calls = _calls(fake_trtexec)
    assert len(calls) == len(ENGINE_SPECS)
    for name in ENGINE_SPECS:
        plan = onnx_repo / name / "1" / "model.plan"
        assert plan.read_bytes() == f"fake-engine:--onnx={onnx_repo / name / '1' / 'model.onnx'}".encode()
        assert stat.S_IMODE(plan.stat().st_mode) == 0o644  # Triton (another user in the container) reads it
    assert all("--fp16" in c and any(a.startswith("--maxShapes=") for a in c) for c in calls)
    assert not list(onnx_repo.rglob("*.tmp"))

    assert build_engines(onnx_repo, log=lambda _: None) == dict.fromkeys(ENGINE_SPECS, "skipped")
    assert len(_calls(fake_trtexec)) == len(ENGINE_SPECS)
    assert build_engines(onnx_repo, only=["mtcnn_onet"], force=True, log=lambda _: None) == {"mtcnn_onet": "built"}
    assert len(_calls(fake_trtexec)) == len(ENGINE_SPECS) + 1


def test_failed_build_keeps_the_previous_plan(
    fake_trtexec: Path, onnx_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = onnx_repo / "mtcnn_rnet" / "1" / "model.plan"
    plan.write_bytes(b"previous engine")
    monkeypatch.setenv("FAKE_TRTEXEC_FAIL", "1")
    with pytest.raises(trt_export.TensorRTBuildError, match="fake failure"):
        build_engines(onnx_repo, only=["mtcnn_rnet"], force=True, log=lambda _: None)
    assert plan.read_bytes() == b"previous engine"
    assert not list(onnx_repo.rglob("*.tmp"))


def test_missing_onnx_is_reported_before_building(fake_trtexec: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m export"):
        build_engines(tmp_path / "empty", log=lambda _: None)
    assert _calls(fake_trtexec) == []


class _FakeTensorRT(types.SimpleNamespace):
    """The parts of the TensorRT Python API the builder uses, recording the calls."""

    def __init__(self, version: str = "10.7.0", parse_ok: bool = True) -> None:
        calls: list[tuple[Any, ...]] = []

        class Logger:
            WARNING = "WARNING"

            def __init__(self, level: str) -> None:
                calls.append(("logger", level))

        class Profile:
            def set_shape(self, name: str, lo: tuple, mid: tuple, hi: tuple) -> None:
                calls.append(("set_shape", name, lo, mid, hi))

        class Config:
            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                calls.append(("pool", pool, size))

            def set_flag(self, flag: str) -> None:
                calls.append(("flag", flag))

            def add_optimization_profile(self, profile: Profile) -> None:
                calls.append(("add_profile",))

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network: object, logger: object) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                calls.append(("parse", path))
                return parse_ok

            def get_error(self, i: int) -> str:
                return "unsupported op"

        class Builder:
            def __init__(self, logger: object) -> None:
                pass

            def create_network(self, flags: int) -> object:
                calls.append(("network", flags))
                return object()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: object, config: Config) -> bytes:
                calls.append(("build",))
                return b"serialized"

        super().__init__(
            __version__=version,
            calls=calls,
            Logger=Logger,
            Builder=Builder,
            OnnxParser=Parser,
            MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
            BuilderFlag=types.SimpleNamespace(FP16="FP16"),
            NetworkDefinitionCreationFlag=types.SimpleNamespace(EXPLICIT_BATCH=0),
        )


def test_python_api_build_sets_fp16_workspace_and_the_profile(tmp_path: Path) -> None:
    trt = _FakeTensorRT()
    spec = ENGINE_SPECS["temporal_classifier"]
    plan = tmp_path / "model.plan"
    trt_export.build_with_python_api(trt, tmp_path / "model.onnx", plan, spec, workspace_mib=512)
    assert plan.read_bytes() == b"serialized"
    assert ("flag", "FP16") in trt.calls
    assert ("pool", "WORKSPACE", 512 << 20) in trt.calls
    assert ("network", 0) in trt.calls  # TensorRT 10: explicit batch is the only mode, no flag
    shapes = [c for c in trt.calls if c[0] == "set_shape"]
    assert shapes == [("set_shape", i.name, i.min, i.opt, i.max) for i in spec.inputs]
    assert trt.calls.index(("add_profile",)) < trt.calls.index(("build",))


def test_python_api_on_tensorrt_8_asks_for_explicit_batch(tmp_path: Path) -> None:
    trt = _FakeTensorRT(version="8.6.1")
    trt_export.build_with_python_api(trt, tmp_path / "m.onnx", tmp_path / "m.plan", ENGINE_SPECS["mtcnn_rnet"])
    assert ("network", 1) in trt.calls


def test_python_api_parse_errors_are_reported(tmp_path: Path) -> None:
    with pytest.raises(trt_export.TensorRTBuildError, match="unsupported op"):
        trt_export.build_with_python_api(
            _FakeTensorRT(parse_ok=False), tmp_path / "m.onnx", tmp_path / "m.plan", ENGINE_SPECS["mtcnn_onet"]
        )
    assert not (tmp_path / "m.plan").exists()


def test_python_api_is_used_when_trtexec_is_absent(
    monkeypatch: pytest.MonkeyPatch, onnx_repo: Path, tmp_path: Path
) -> None:
    fake = _FakeTensorRT()
    monkeypatch.delenv("TRTEXEC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(trt_export, "TRTEXEC_FALLBACKS", ())
    monkeypatch.setattr(trt_export, "has_tensorrt_module", lambda: True)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    assert build_engines(onnx_repo, only=["mtcnn_pnet"], log=lambda _: None) == {"mtcnn_pnet": "built"}
    assert (onnx_repo / "mtcnn_pnet" / "1" / "model.plan").read_bytes() == b"serialized"


def test_engine_spec_max_batch_is_the_smallest_input_max() -> None:
    spec = EngineSpec("m", (InputProfile("a", (1, 2), (2, 2), (8, 2)), InputProfile("b", (1,), (2,), (4,))))
    assert spec.max_batch_size == 4
