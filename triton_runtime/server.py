"""Prepare the backend folder and start the `tritonserver` binary shipped in the nvidia-pytriton wheel.

The wheel has the server, the Python backend and its stubs, but no ONNX Runtime backend. The backend folder
built here holds the wheel's Python backend (with the stub for this interpreter) and a Python-based backend named
`onnxruntime`, so configs with `platform: "onnxruntime_onnx"` load unchanged here and in the NGC image.
Nothing is written into site-packages.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_core.constants import CLASSIFIER_MODEL
from deepfake_core.paths import MODEL_REPOSITORY, REPO_ROOT

DEFAULT_MODEL_REPOSITORY = MODEL_REPOSITORY
DEFAULT_BACKEND_DIR = REPO_ROOT / ".triton" / "backends"
ORT_BACKEND_SOURCE = Path(__file__).resolve().parent / "backends" / "onnxruntime" / "model.py"


class TritonNotInstalledError(RuntimeError):
    """The nvidia-pytriton wheel (which carries the server binary) is missing."""


def pytriton_root() -> Path:
    """Folder of the pytriton package inside site-packages."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotInstalledError(
            "tritonserver not found: install it with `pip install --no-deps nvidia-pytriton==0.7.0` (or `make triton`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _install(src: Path, dst: Path) -> None:
    """Copy src to dst unless an identical copy is there (idempotent).

    A copy, not a symlink: Triton refuses backend libraries whose real path escapes the backend folder.
    """
    if dst.is_file() and not dst.is_symlink() and filecmp.cmp(src, dst, shallow=False):
        return
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def prepare_backend_dir(backend_dir: Path = DEFAULT_BACKEND_DIR) -> Path:
    """Build `<backend_dir>/python` (wheel's Python backend + stub) and `<backend_dir>/onnxruntime`."""
    server = pytriton_root() / "tritonserver"
    python_dir = backend_dir / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in (server / "backends" / "python").iterdir():
        if item.is_file():
            _install(item, python_dir / item.name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonNotInstalledError(f"nvidia-pytriton ships no Python backend stub for Python {version}")
    _install(stub, python_dir / "triton_python_backend_stub")
    ort_dir = backend_dir / "onnxruntime"
    ort_dir.mkdir(parents=True, exist_ok=True)
    _install(ORT_BACKEND_SOURCE, ort_dir / "model.py")
    return backend_dir


@dataclass
class ServerOptions:
    """Command-line options of the local server."""

    model_repository: Path = DEFAULT_MODEL_REPOSITORY
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    backend_dir: Path = DEFAULT_BACKEND_DIR
    model_config_name: str | None = None
    model_control_mode: str = "none"
    load_models: list[str] = field(default_factory=list)
    repository_poll_secs: int = 0
    log_verbose: int = 0
    extra_args: list[str] = field(default_factory=list)


def server_command(opts: ServerOptions) -> list[str]:
    """The tritonserver command line for these options."""
    binary = pytriton_root() / "tritonserver" / "bin" / "tritonserver"
    cmd = [
        str(binary),
        f"--model-repository={opts.model_repository}",
        f"--backend-directory={opts.backend_dir}",
        f"--http-address={opts.host}",
        f"--http-port={opts.http_port}",
        f"--grpc-address={opts.host}",
        f"--grpc-port={opts.grpc_port}",
        f"--metrics-address={opts.host}",
        f"--metrics-port={opts.metrics_port}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        f"--model-control-mode={opts.model_control_mode}",
        f"--log-verbose={opts.log_verbose}",
    ]
    if opts.model_control_mode == "poll" and opts.repository_poll_secs:
        cmd.append(f"--repository-poll-secs={opts.repository_poll_secs}")
    cmd += [f"--load-model={name}" for name in opts.load_models]
    if opts.model_config_name:
        cmd.append(f"--model-config-name={opts.model_config_name}")
    return cmd + opts.extra_args


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver and its Python stubs.

    The stub runs Python in isolated mode (PYTHONPATH is ignored), so the venv's `bin` goes first on PATH; the stub
    links the system libpython, so the venv's base interpreter library folder goes first on LD_LIBRARY_PATH to keep
    the interpreter and its standard library in agreement.
    """
    env = dict(os.environ if base is None else base)
    libs = pytriton_root().parent / "nvidia_pytriton.libs"
    lib_paths = [sysconfig.get_config_var("LIBDIR") or "", str(libs)]
    if env.get("LD_LIBRARY_PATH"):
        lib_paths.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in lib_paths if p)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    # The Python models import the project's packages; the stub ignores PYTHONPATH, the venv has them installed.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def parse_args(argv: list[str] | None = None) -> ServerOptions:
    """Parse the launcher's command line."""
    p = argparse.ArgumentParser(prog="python -m triton_runtime", description=__doc__.splitlines()[0])
    p.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    p.add_argument("--host", default=os.environ.get("TRITON_HOST", "127.0.0.1"))
    p.add_argument("--http-port", type=int, default=int(os.environ.get("TRITON_HTTP_PORT", 8000)))
    p.add_argument("--grpc-port", type=int, default=int(os.environ.get("TRITON_GRPC_PORT", 8001)))
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("TRITON_METRICS_PORT", 8002)))
    p.add_argument("--backend-dir", type=Path, default=DEFAULT_BACKEND_DIR)
    p.add_argument("--model-config-name", default=None, help="e.g. gpu: use <model>/configs/gpu.pbtxt where present")
    p.add_argument("--model-control-mode", choices=["none", "poll", "explicit"], default="none")
    p.add_argument("--repository-poll-secs", type=int, default=0)
    p.add_argument("--load-model", action="append", default=[], dest="load_models")
    p.add_argument("--log-verbose", type=int, default=0)
    p.add_argument("extra_args", nargs="*", help="passed to tritonserver after --")
    a = p.parse_args(argv)
    return ServerOptions(**vars(a))


def main(argv: list[str] | None = None) -> None:
    """Start tritonserver in the foreground (exec: signals reach it directly)."""
    opts = parse_args(argv)
    try:
        prepare_backend_dir(opts.backend_dir)
        cmd = server_command(opts)
    except TritonNotInstalledError as exc:
        sys.exit(str(exc))
    if not (opts.model_repository / CLASSIFIER_MODEL / "1" / "model.onnx").exists():
        print("warning: ONNX models are missing; run `make export` first", file=sys.stderr)
    print("starting:", " ".join(cmd), file=sys.stderr, flush=True)
    os.execve(cmd[0], cmd, server_env())
