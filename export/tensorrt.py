"""TensorRT engines (``model.plan``) for the ONNX models: the alternative to ONNX Runtime's TensorRT accelerator.

``python -m export --tensorrt`` (after the ONNX export) or ``python -m export.tensorrt`` (from ONNX files already in
the repository) builds ``<repo>/<model>/1/model.plan`` for each ONNX model, in FP16, with one optimisation profile
per engine covering the dynamic dimensions (batch, and frames or image size): the min / opt / max shapes below.
``<model>/configs/trt.pbtxt`` is the matching ``platform: "tensorrt_plan"`` config; Triton picks it with
``tritonserver --model-config-name=trt`` (models without one, the Python models and the ensemble, keep their
``config.pbtxt``).

Engines are built with ``trtexec`` when it is found (``$TRTEXEC``, ``PATH``, or the NGC TensorRT container's
``/usr/src/tensorrt/bin/trtexec``), else with the TensorRT Python API (``import tensorrt``). Where neither is present
(no GPU stack, like the CPU machines this project is developed on) nothing is built and a message says so: the ONNX
models and their ``configs/gpu.pbtxt`` (ONNX Runtime with the TensorRT accelerator) are unaffected.

An engine is specific to the GPU model and the TensorRT version that built it: build it with the TensorRT release of
the Triton image that serves it (NGC ``nvcr.io/nvidia/tensorrt:<release>-py3`` for ``tritonserver:<release>-py3``),
on the GPU type it will run on. This module needs only the standard library, so it runs in that container from a
checkout: ``python3 -m export.tensorrt``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_core import constants as C
from deepfake_core.paths import MODEL_REPOSITORY

__all__ = [
    "ENGINE_SPECS",
    "EngineSpec",
    "InputProfile",
    "TensorRTBuildError",
    "TensorRTNotFound",
    "build_engines",
    "find_builder",
    "trtexec_command",
]

DEFAULT_MODEL_REPOSITORY = MODEL_REPOSITORY
VERSION_DIR = "1"
ONNX_FILE = "model.onnx"
PLAN_FILE = "model.plan"
DEFAULT_WORKSPACE_MIB = 2048  # builder scratch memory (trtexec --memPoolSize=workspace:<MiB>)
TRTEXEC_FALLBACKS = (Path("/usr/src/tensorrt/bin/trtexec"),)  # where the NGC TensorRT container keeps it
FILE_MODE = 0o644

Shape = tuple[int, ...]


@dataclass(frozen=True)
class InputProfile:
    """One dynamic input of an engine: its shapes (batch dimension first) at the profile's min, opt and max."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError(f"{self.name}: min/opt/max shapes have different ranks")
        if any(not (lo <= mid <= hi) for lo, mid, hi in zip(self.min, self.opt, self.max, strict=True)):
            raise ValueError(f"{self.name}: shapes must satisfy min <= opt <= max in every dimension")
        if any(d < 1 for d in self.min):
            raise ValueError(f"{self.name}: shapes must be positive")


@dataclass(frozen=True)
class EngineSpec:
    """What to build for one model: its inputs' optimisation profile (one profile per engine)."""

    model: str
    inputs: tuple[InputProfile, ...]

    @property
    def max_batch_size(self) -> int:
        """The largest batch the engine takes: the ``max_batch_size`` of its ``tensorrt_plan`` config."""
        return min(i.max[0] for i in self.inputs)


# Profiles. The opt shape is what the service sends most (TensorRT tunes kernels for it), the max what it may send.
# - mtcnn_pnet: face_detector sends at most DetectorParams.pnet_max_batch (64) frames of one pyramid level, frames at
#   most MTCNN_DETECT_MAX_SIDE (640) on their longer side, levels down to P-Net's 12 x 12 window.
# - mtcnn_rnet / mtcnn_onet: candidate crops, up to 256 per BLS call, merged by the dynamic batcher up to 1024.
# - temporal_classifier: one video (1..MAX_NUM_FRAMES frames) per request, batched up to 8 videos (not fewer: Triton
#   refuses an ensemble whose max_batch_size, 8, exceeds a composing model's). Batch and frames are independent
#   dimensions of one profile, so the engine reserves activation memory for 8 x 128 = 1024 face crops (a few GiB).
_SIDE = C.MTCNN_DETECT_MAX_SIDE
_T = C.MAX_NUM_FRAMES
_CROP = C.CROP_SIZE
ENGINE_SPECS: dict[str, EngineSpec] = {
    spec.model: spec
    for spec in (
        EngineSpec("mtcnn_pnet", (InputProfile("image", (1, 3, 12, 12), (32, 3, 360, 640), (64, 3, _SIDE, _SIDE)),)),
        EngineSpec("mtcnn_rnet", (InputProfile("image", (1, 3, 24, 24), (256, 3, 24, 24), (1024, 3, 24, 24)),)),
        EngineSpec("mtcnn_onet", (InputProfile("image", (1, 3, 48, 48), (64, 3, 48, 48), (1024, 3, 48, 48)),)),
        EngineSpec(
            "temporal_classifier",
            (
                InputProfile(
                    "FACES", (1, 1, 3, _CROP, _CROP), (1, C.NUM_FRAMES, 3, _CROP, _CROP), (8, _T, 3, _CROP, _CROP)
                ),
                InputProfile("FACE_MASK", (1, 1), (1, C.NUM_FRAMES), (8, _T)),
            ),
        ),
    )
}
MODEL_NAMES = tuple(ENGINE_SPECS)


class TensorRTNotFound(RuntimeError):
    """Neither trtexec nor the TensorRT Python module is available."""


class TensorRTBuildError(RuntimeError):
    """TensorRT failed to build an engine (nothing was written for that model)."""


def _dims(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def shapes_arg(spec: EngineSpec, which: str) -> str:
    """trtexec's shape list for ``which`` in min/opt/max: ``name:AxBxC,name2:...``."""
    return ",".join(f"{i.name}:{_dims(getattr(i, which))}" for i in spec.inputs)


def trtexec_command(
    trtexec: str | Path,
    onnx_path: Path,
    plan_path: Path,
    spec: EngineSpec,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
) -> list[str]:
    """The trtexec command line that builds ``plan_path`` from ``onnx_path`` (TensorRT 10 flags)."""
    return [
        str(trtexec),
        f"--onnx={onnx_path}",
        f"--saveEngine={plan_path}",
        "--fp16",
        f"--minShapes={shapes_arg(spec, 'min')}",
        f"--optShapes={shapes_arg(spec, 'opt')}",
        f"--maxShapes={shapes_arg(spec, 'max')}",
        f"--memPoolSize=workspace:{workspace_mib}",
        "--skipInference",
    ]


def find_trtexec(env: dict[str, str] | None = None) -> Path | None:
    """``$TRTEXEC``, else ``trtexec`` on PATH, else the NGC TensorRT container's location; None when absent."""
    env = dict(os.environ if env is None else env)
    if env.get("TRTEXEC"):
        path = Path(env["TRTEXEC"])
        return path if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which("trtexec", path=env.get("PATH"))
    if found:
        return Path(found)
    return next((p for p in TRTEXEC_FALLBACKS if p.is_file() and os.access(p, os.X_OK)), None)


def has_tensorrt_module() -> bool:
    """Whether ``import tensorrt`` would find the TensorRT Python package (not this module, run as a script)."""
    spec = importlib.util.find_spec("tensorrt")
    return spec is not None and spec.origin != __file__


Builder = Callable[[Path, Path, EngineSpec], None]


def _trtexec_builder(trtexec: Path, workspace_mib: int, log: Callable[[str], None]) -> Builder:
    def build(onnx_path: Path, plan_path: Path, spec: EngineSpec) -> None:
        cmd = trtexec_command(trtexec, onnx_path, plan_path, spec, workspace_mib)
        log("running: " + " ".join(cmd))
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        if proc.returncode != 0 or not plan_path.is_file():
            tail = "\n".join(proc.stdout.splitlines()[-40:])
            raise TensorRTBuildError(f"trtexec failed for {spec.model} (exit {proc.returncode}):\n{tail}")

    return build


def build_with_python_api(
    trt: Any, onnx_path: Path, plan_path: Path, spec: EngineSpec, workspace_mib: int = DEFAULT_WORKSPACE_MIB
) -> None:
    """Build the engine with the TensorRT Python API module ``trt``: FP16, one optimisation profile."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(str(trt.__version__).split(".")[0]) < 10:  # TensorRT 8.x: explicit batch is opt-in (10: the only mode)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in spec.inputs:
        profile.set_shape(i.name, i.min, i.opt, i.max)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTBuildError(f"TensorRT could not build an engine for {spec.model} (see its log above)")
    plan_path.write_bytes(bytes(serialized))


def _python_api_builder(workspace_mib: int, log: Callable[[str], None]) -> Builder:
    trt = importlib.import_module("tensorrt")
    log(f"building with the TensorRT {trt.__version__} Python API")

    def build(onnx_path: Path, plan_path: Path, spec: EngineSpec) -> None:
        build_with_python_api(trt, onnx_path, plan_path, spec, workspace_mib)

    return build


def find_builder(
    backend: str = "auto", workspace_mib: int = DEFAULT_WORKSPACE_MIB, log: Callable[[str], None] = print
) -> Builder:
    """A function building one engine, with trtexec (preferred) or the Python API; TensorRTNotFound when neither."""
    if backend not in ("auto", "trtexec", "python"):
        raise ValueError(f"unknown TensorRT backend {backend!r}: auto, trtexec or python")
    if backend in ("auto", "trtexec"):
        trtexec = find_trtexec()
        if trtexec is not None:
            return _trtexec_builder(trtexec, workspace_mib, log)
    if backend in ("auto", "python") and has_tensorrt_module():
        return _python_api_builder(workspace_mib, log)
    wanted = {"auto": "trtexec or the tensorrt Python module", "trtexec": "trtexec", "python": "tensorrt module"}
    raise TensorRTNotFound(
        f"TensorRT not found ({wanted[backend]}: no $TRTEXEC, no trtexec on PATH or in /usr/src/tensorrt/bin, "
        "no `import tensorrt`)"
    )


def _up_to_date(onnx_path: Path, plan_path: Path) -> bool:
    return plan_path.is_file() and plan_path.stat().st_mtime >= onnx_path.stat().st_mtime


def build_engines(
    model_repository: str | Path = DEFAULT_MODEL_REPOSITORY,
    only: Sequence[str] | None = None,
    force: bool = False,
    builder: Builder | None = None,
    backend: str = "auto",
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Build ``model.plan`` next to each ``model.onnx``; returns ``{name: "built" | "skipped"}``.

    A plan newer than its ONNX file is skipped unless ``force`` (rebuild after changing GPU type or TensorRT
    version: an engine only runs where it was built). Raises TensorRTNotFound when TensorRT is absent (before
    touching anything), FileNotFoundError when an ONNX file is missing, TensorRTBuildError when a build fails (the
    model's previous plan, if any, is left as it was).
    """
    names = list(MODEL_NAMES if not only else dict.fromkeys(only))
    unknown = [n for n in names if n not in ENGINE_SPECS]
    if unknown:
        raise ValueError(f"no TensorRT engine spec for {unknown}; choose from {list(MODEL_NAMES)}")
    repo = Path(model_repository)
    onnx_files = [repo / n / VERSION_DIR / ONNX_FILE for n in names]
    missing = [str(f) for f in onnx_files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"ONNX models missing ({', '.join(missing)}): run `python -m export` first")
    build = builder or find_builder(backend, workspace_mib, log)
    results: dict[str, str] = {}
    for name in names:
        folder = repo / name / VERSION_DIR
        onnx_path, plan_path = folder / ONNX_FILE, folder / PLAN_FILE
        if not force and _up_to_date(onnx_path, plan_path):
            log(f"skipped  {name}: {plan_path} is newer than {ONNX_FILE} (--force rebuilds)")
            results[name] = "skipped"
            continue
        fd, tmp_name = tempfile.mkstemp(prefix=f".{PLAN_FILE}.", suffix=".tmp", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        tmp.unlink()  # the builder creates it; an empty leftover would look like an engine
        try:
            build(onnx_path, tmp, ENGINE_SPECS[name])
            if not tmp.is_file() or tmp.stat().st_size == 0:
                raise TensorRTBuildError(f"no engine was written for {name}")
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, plan_path)
        finally:
            tmp.unlink(missing_ok=True)
        log(f"built    {name}: {plan_path} ({plan_path.stat().st_size / 2**20:.1f} MiB)")
        results[name] = "built"
    return results


SKIP_MESSAGE = (
    "TensorRT engines skipped: {reason}. The ONNX models are exported and configs/gpu.pbtxt (ONNX Runtime with the "
    "TensorRT accelerator) serve them as before; build model.plan where TensorRT and a GPU are, e.g. "
    "`python3 -m export.tensorrt` in the nvcr.io/nvidia/tensorrt container of the Triton release you serve with."
)


def run(
    model_repository: str | Path,
    only: Sequence[str] | None = None,
    force: bool = False,
    backend: str = "auto",
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
) -> int:
    """The command-line behaviour: build, or skip with a clear message where TensorRT is absent (exit 0)."""
    try:
        build_engines(model_repository, only=only, force=force, backend=backend, workspace_mib=workspace_mib)
    except TensorRTNotFound as exc:
        print(SKIP_MESSAGE.format(reason=exc), file=sys.stderr)
        return 0
    except (TensorRTBuildError, FileNotFoundError, ValueError) as exc:
        print(f"TensorRT export failed: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.tensorrt",
        description="Build FP16 TensorRT engines (<repo>/<model>/1/model.plan) from the exported ONNX models.",
    )
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    parser.add_argument("--only", nargs="+", choices=MODEL_NAMES, metavar="NAME", help="build only these models")
    parser.add_argument("--force", action="store_true", help="rebuild even when model.plan is newer than model.onnx")
    parser.add_argument("--backend", choices=("auto", "trtexec", "python"), default="auto")
    parser.add_argument("--workspace-mib", type=int, default=DEFAULT_WORKSPACE_MIB, help="builder workspace (MiB)")
    args = parser.parse_args(argv)
    return run(args.model_repository, args.only, args.force, args.backend, args.workspace_mib)


if __name__ == "__main__":
    raise SystemExit(main())
