"""The model repository the Triton image serves, under each config name it can be started with.

- every config (config.pbtxt, configs/gpu.pbtxt, configs/trt.pbtxt) parses into Triton's ModelConfig protobuf and
  names its folder; the GPU configs use KIND_GPU and ONNX Runtime's TensorRT accelerator in FP16; the TensorRT ones
  are tensorrt_plan configs matching export.tensorrt's optimisation profiles;
- the tensors of every ONNX-backed config (names, data types, dims with the batch dimension) match the exported ONNX
  files, and every ensemble resolves under each config name (Triton's own checks: tensors, max_batch_size);
- the Python models import nothing beyond the base dependencies the image installs;
- the local Triton loads the repository with --model-config-name=gpu (the GPU configs resolved, their warmups run on
  the ONNX files). No GPU here: the copy it loads has KIND_GPU replaced by KIND_CPU, the one difference.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.tensorrt import ENGINE_SPECS
from triton_runtime.process import TritonProcess, TritonStartError
from triton_runtime.server import ServerOptions

REPO = Path(__file__).resolve().parents[2]
MODEL_REPOSITORY = REPO / "model_repository"
ARTIFACTS = REPO / "test-artifacts"
MODELS = sorted(p.parent.name for p in MODEL_REPOSITORY.glob("*/config.pbtxt"))
ONNX_MODELS = sorted(m for m in MODELS if (MODEL_REPOSITORY / m / "configs" / "gpu.pbtxt").exists())
CONFIG_NAMES = (None, "gpu", "trt")  # tritonserver [--model-config-name=NAME]

ONNX_TYPES: dict[int, int] = {
    onnx.TensorProto.FLOAT: mc.TYPE_FP32,
    onnx.TensorProto.FLOAT16: mc.TYPE_FP16,
    onnx.TensorProto.UINT8: mc.TYPE_UINT8,
    onnx.TensorProto.INT32: mc.TYPE_INT32,
    onnx.TensorProto.INT64: mc.TYPE_INT64,
    onnx.TensorProto.BOOL: mc.TYPE_BOOL,
}


def parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def resolved(model: str, config_name: str | None) -> tuple[Path, mc.ModelConfig]:
    """What tritonserver --model-config-name=config_name reads for model: configs/<name>.pbtxt, else config.pbtxt."""
    path = MODEL_REPOSITORY / model / "config.pbtxt"
    if config_name and (MODEL_REPOSITORY / model / "configs" / f"{config_name}.pbtxt").exists():
        path = MODEL_REPOSITORY / model / "configs" / f"{config_name}.pbtxt"
    return path, parse(path)


def all_config_files() -> list[Path]:
    return sorted(MODEL_REPOSITORY.glob("*/config.pbtxt")) + sorted(MODEL_REPOSITORY.glob("*/configs/*.pbtxt"))


def tensors(config: mc.ModelConfig) -> dict[str, list[tuple[str, int, tuple[int, ...]]]]:
    return {
        "input": [(t.name, t.data_type, tuple(t.dims)) for t in config.input],
        "output": [(t.name, t.data_type, tuple(t.dims)) for t in config.output],
    }


@pytest.fixture(scope="module")
def onnx_graphs(model_repository: Path) -> dict[str, onnx.GraphProto]:
    return {
        m: onnx.load(str(model_repository / m / "1" / "model.onnx"), load_external_data=False).graph
        for m in ONNX_MODELS
    }


def test_repository_layout() -> None:
    assert {"deepfake_detector", "video_decode", "face_detector", "face_crop", "temporal_classifier"} <= set(MODELS)
    assert set(ONNX_MODELS) == set(ENGINE_SPECS) == {"mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", "temporal_classifier"}
    for model in ONNX_MODELS:
        assert {p.stem for p in (MODEL_REPOSITORY / model / "configs").glob("*.pbtxt")} >= {"gpu", "trt"}, model


@pytest.mark.parametrize("path", all_config_files(), ids=lambda p: str(p.relative_to(MODEL_REPOSITORY)))
def test_config_parses_and_names_its_folder(path: Path) -> None:
    config = parse(path)
    folder = path.parent.parent.name if path.parent.name == "configs" else path.parent.name
    assert config.name == folder
    assert config.platform or config.backend


@pytest.mark.parametrize("model", ONNX_MODELS)
def test_gpu_config_is_gpu_with_the_tensorrt_accelerator(model: str) -> None:
    cpu = parse(MODEL_REPOSITORY / model / "config.pbtxt")
    gpu = parse(MODEL_REPOSITORY / model / "configs" / "gpu.pbtxt")
    assert gpu.platform == "onnxruntime_onnx"
    assert gpu.instance_group and all(g.kind == mc.ModelInstanceGroup.KIND_GPU for g in gpu.instance_group)
    accelerators = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"]
    assert accelerators[0].parameters["precision_mode"] == "FP16"
    assert tensors(gpu) == tensors(cpu), "the ensemble and BLS callers see the same tensors in every mode"
    assert gpu.max_batch_size >= cpu.max_batch_size


@pytest.mark.parametrize("model", ONNX_MODELS)
def test_trt_config_is_a_tensorrt_plan_matching_the_engine_profile(model: str) -> None:
    gpu = parse(MODEL_REPOSITORY / model / "configs" / "gpu.pbtxt")
    trt = parse(MODEL_REPOSITORY / model / "configs" / "trt.pbtxt")
    spec = ENGINE_SPECS[model]
    assert trt.platform == "tensorrt_plan"
    assert trt.default_model_filename == "model.plan"
    assert all(g.kind == mc.ModelInstanceGroup.KIND_GPU for g in trt.instance_group)
    assert not trt.optimization.execution_accelerators.gpu_execution_accelerator  # the engine is TensorRT already
    assert tensors(trt) == tensors(gpu)
    assert trt.max_batch_size == spec.max_batch_size
    assert all(b <= trt.max_batch_size for b in trt.dynamic_batching.preferred_batch_size)
    for config_input, profile in zip(trt.input, spec.inputs, strict=True):
        assert config_input.name == profile.name
        dims = [trt.max_batch_size, *config_input.dims]
        assert len(dims) == len(profile.max)
        for k, dim in enumerate(dims):
            if dim != -1:
                assert profile.min[k] <= dim <= profile.max[k], (model, profile.name, k)
                if k > 0:
                    assert profile.min[k] == profile.max[k] == dim, (model, profile.name, k)
    for warm in trt.model_warmup:
        assert warm.batch_size <= trt.max_batch_size
        for name, value in warm.inputs.items():
            profile = next(i for i in spec.inputs if i.name == name)
            shape = (warm.batch_size, *value.dims)
            assert all(lo <= d <= hi for lo, d, hi in zip(profile.min, shape, profile.max, strict=True)), name


def _onnx_signature(value: onnx.ValueInfoProto) -> tuple[int, list[int | None]]:
    t = value.type.tensor_type
    return ONNX_TYPES[t.elem_type], [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


@pytest.mark.parametrize("config_name", CONFIG_NAMES, ids=lambda n: n or "default")
@pytest.mark.parametrize("model", ONNX_MODELS)
def test_config_tensors_match_the_onnx_file(
    model: str, config_name: str | None, onnx_graphs: dict[str, onnx.GraphProto]
) -> None:
    """Names, data types and dims (batch dimension first) of inputs and outputs: a dynamic ONNX dim must be -1 in the
    config; a fixed one must be equal, or -1 where the config serves several architectures (FEATURE_MAPS' channels
    depend on the encoder's width), as Triton accepts."""
    path, config = resolved(model, config_name)
    graph = onnx_graphs[model]
    for kind, config_tensors, graph_tensors in (
        ("input", config.input, graph.input),
        ("output", config.output, graph.output),
    ):
        onnx_tensors = {v.name: _onnx_signature(v) for v in graph_tensors}
        assert [t.name for t in config_tensors] == [v.name for v in graph_tensors], f"{path}: {kind} names"
        for t in config_tensors:
            dtype, dims = onnx_tensors[t.name]
            assert t.data_type == dtype, f"{path}: {t.name} data type"
            assert config.max_batch_size > 0 and dims[0] is None, f"{path}: {t.name} needs a dynamic batch dim"
            assert len(dims) == len(t.dims) + 1, f"{path}: {t.name} rank"
            for want, got in zip(t.dims, dims[1:], strict=True):
                if got is None:
                    assert want == -1, f"{path}: {t.name} dims {list(t.dims)} vs ONNX {dims}"
                else:
                    assert want in (got, -1), f"{path}: {t.name} dims {list(t.dims)} vs ONNX {dims}"


@pytest.mark.parametrize("config_name", CONFIG_NAMES, ids=lambda n: n or "default")
def test_ensembles_resolve_under_each_config_name(config_name: str | None) -> None:
    """Triton's ensemble checks: composing models exist, batch sizes fit, mapped tensors exist on the models."""
    configs = {m: resolved(m, config_name)[1] for m in MODELS}
    ensembles = [c for c in configs.values() if c.platform == "ensemble"]
    assert ensembles
    for ensemble in ensembles:
        produced = {t.name for t in ensemble.input}
        for step in ensemble.ensemble_scheduling.step:
            model = configs[step.model_name]
            assert model.max_batch_size == 0 or model.max_batch_size >= ensemble.max_batch_size, (
                f"{ensemble.name} allows batch {ensemble.max_batch_size}, {model.name} only {model.max_batch_size}"
            )
            inputs = {t.name: t for t in model.input}
            outputs = {t.name for t in model.output}
            assert set(step.input_map) <= set(inputs), step.model_name
            assert {k for k, t in inputs.items() if not t.optional} <= set(step.input_map), step.model_name
            assert set(step.input_map.values()) <= produced, f"{step.model_name} reads a tensor nothing produced"
            assert set(step.output_map) <= outputs, step.model_name
            produced |= set(step.output_map.values())
        assert {t.name for t in ensemble.output} <= produced


def _imported_modules(path: Path) -> set[str]:
    mods: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
            mods |= {f"{node.module}.{a.name}" for a in node.names}
    return mods


def test_python_models_need_only_the_base_dependencies() -> None:
    """The Triton image installs `pip install .` (base deps) + deepfake_core: enough for every Python model."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    base = {
        d.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower()
        for d in pyproject["project"]["dependencies"]
    }
    dist_of = {"numpy": "numpy", "av": "av", "cv2": "opencv-python-headless"}
    seen: set[Path] = set()
    todo = sorted(MODEL_REPOSITORY.glob("*/1/model.py"))
    assert todo
    third_party: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for mod in _imported_modules(path):
            top = mod.split(".")[0]
            if top == "deepfake_core":
                candidate = REPO / (mod.replace(".", "/") + ".py")
                if candidate.exists():
                    todo.append(candidate)
            elif top not in sys.stdlib_module_names and top not in ("triton_python_backend_utils", "__future__"):
                third_party.add(top)
    assert third_party <= set(dist_of), f"Python models import {sorted(third_party - set(dist_of))}: not installed"
    assert {dist_of[m] for m in third_party} <= base


@pytest.fixture(scope="module")
def gpu_repository_copy(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served repository (configs, Python models, exported ONNX files), GPU instances made CPU ones."""
    dst = tmp_path_factory.mktemp("served") / "models"
    shutil.copytree(
        model_repository, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "model.plan", "*.tmp*")
    )
    for gpu in dst.glob("*/configs/gpu.pbtxt"):
        text = gpu.read_text()
        assert "KIND_GPU" in text
        gpu.write_text(text.replace("KIND_GPU", "KIND_CPU"))
    return dst


@pytest.fixture(scope="module")
def triton_gpu_configs(gpu_repository_copy: Path) -> Iterator[TritonProcess]:
    server = TritonProcess.on_free_ports(
        ARTIFACTS / "triton-gpu-configs.log",
        ServerOptions(model_repository=gpu_repository_copy, model_config_name="gpu"),
    )
    server.startup_timeout_s = 180
    try:
        server.start()
    except TritonStartError as exc:
        pytest.fail(f"the local Triton did not load the repository with --model-config-name=gpu: {exc}")
    yield server
    server.stop()


def _get(server: TritonProcess, path: str) -> dict:
    with urllib.request.urlopen(f"http://{server.http_url}{path}", timeout=10) as r:
        return json.loads(r.read())


def test_local_triton_loads_the_repository_with_the_gpu_config_names(triton_gpu_configs: TritonProcess) -> None:
    index = {m["name"]: m for m in json.loads(_post(triton_gpu_configs, "/v2/repository/index"))}
    assert set(index) == set(MODELS)
    assert all(m["state"] == "READY" for m in index.values()), index
    for model in MODELS:
        served = _get(triton_gpu_configs, f"/v2/models/{model}/config")
        _, want = resolved(model, "gpu")
        assert served["max_batch_size"] == want.max_batch_size, model
        assert [i["name"] for i in served["input"]] == [i.name for i in want.input], model
        if model in ONNX_MODELS:  # the gpu config was read, not config.pbtxt
            assert [w["name"] for w in served["model_warmup"]] == [w.name for w in want.model_warmup], model
            accelerators = served["optimization"]["execution_accelerators"]["gpu_execution_accelerator"]
            assert accelerators[0]["name"] == "tensorrt"


def _post(server: TritonProcess, path: str) -> bytes:
    request = urllib.request.Request(f"http://{server.http_url}{path}", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.read()
