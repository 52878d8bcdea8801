"""ONNX export of the Triton models: MTCNN P/R/O-Net and the temporal classifier.

Writes ``<repo>/<model>/1/model.onnx`` for each model, next to a stamp file ``1/.export-stamp.json`` that
records a digest of everything the file depends on (network sources, weights or checkpoint digest, torch
version, opset). A model whose stamp matches is skipped unless forced. The classifier also gets
``1/metadata.json`` (version, threshold, num_frames, arch, ...), and its identity (version, checkpoint sha256,
precision, threshold) goes into the ``parameters`` of its configs (``config.pbtxt``, ``configs/*.pbtxt``, between
the markers of ``deepfake_core.served_identity``), which Triton reports from ``get_model_config``: the gateway reads
the served model's identity there, never from files.

Every export is checked against torch with ONNX Runtime on random inputs (several batch sizes, and sizes or
frame counts other than the traced ones); the file is written to a temp file in the same folder and moved into
place only when the check passes, so a failed export leaves nothing behind. Of the config.pbtxt files only the
classifier's identity block is written, and only when it changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

import deepfake_core
from deepfake_core import checkpoint as ckpt
from deepfake_core import constants, mtcnn
from deepfake_core.classifier import ExportWrapper
from deepfake_core.ensemble_contract import logit
from deepfake_core.paths import BUNDLED_CHECKPOINT, MODEL_REPOSITORY
from deepfake_core.preprocess import normalize_crops
from deepfake_core.served_identity import ServedIdentity, portable_path, with_identity

__all__ = [
    "ATOL",
    "DEFAULT_CHECKPOINT",
    "DEFAULT_MODEL_REPOSITORY",
    "MODEL_NAMES",
    "ExportCheckError",
    "QuantizationError",
    "export_models",
    "precision_reason",
    "served_identity",
    "write_served_identity",
]

DEFAULT_MODEL_REPOSITORY = MODEL_REPOSITORY
# The checkpoint exported when none is given (the bundled weights, see docs/MODEL_CARD.md); None = the seeded
# untrained classifier (`python -m export --untrained`).
DEFAULT_CHECKPOINT: Path | None = BUNDLED_CHECKPOINT

OPSET = 17
ATOL = 1e-4  # max abs difference allowed between ONNX Runtime and torch outputs
# Logit outputs are unbounded: a trained classifier gives logits of tens, where float32 rounding differences of
# torch and ORT kernels scale with the magnitude. They are compared relative to max(1, |torch value|) instead
# (i.e. absolute up to |logit| 1, relative above); probabilities (PROB_FAKE, FRAME_SCORES) and the MTCNN outputs
# keep the plain absolute ATOL, so what the service reports is still checked to 1e-4.
RELATIVE_OUTPUTS = frozenset({"VIDEO_LOGIT"})
# FEATURE_MAPS (for the gateway's Grad-CAM) leave the graph as float16 after the whole CNN: float32 kernel differences
# and float16 steps (2**-10 relative) add up, so they are compared relative to the tensor's range (what Grad-CAM's
# min-max scaled maps see), not element by element.
FLOAT16_OUTPUTS = {"FEATURE_MAPS": 2e-3}
VERSION_DIR = "1"
MODEL_FILE = "model.onnx"
FP32_FILE = "model.fp32.onnx"  # the float32 graph, kept next to a served INT8 model.onnx
STAMP_FILE = ".export-stamp.json"
METADATA_FILE = "metadata.json"
STAMP_FORMAT = "deepfake-export-stamp/1"
FILE_MODE = 0o644  # mkstemp creates 0600 files; Triton (maybe another user in a container) must read them
MODEL_NAMES = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", constants.CLASSIFIER_MODEL)

_CORE_DIR = Path(deepfake_core.__file__).resolve().parent
_CLASSIFIER_SOURCES = tuple(
    _CORE_DIR / f
    for f in ("classifier.py", "efficientnet.py", "checkpoint.py", "constants.py", "preprocess.py", "vit.py")
)

Inputs = tuple[np.ndarray, ...]


class ExportCheckError(RuntimeError):
    """ONNX Runtime disagrees with torch (or the ONNX graph is invalid): nothing was written."""


class QuantizationError(RuntimeError):
    """INT8 was asked for and could not be tried (anything but the gate's refusal): nothing was written for the
    classifier, rather than serving float32 quietly."""


@dataclass
class ExportJob:
    """One model to export: how to build it, its tensor names, dynamic axes and check inputs."""

    name: str
    build: Callable[[], nn.Module]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    trace_inputs: Inputs
    check_inputs: Sequence[Inputs]
    digest_parts: dict[str, str]
    metadata: Callable[[], dict[str, Any]] | None = None
    # After the float32 export: try INT8 (export.quantize), served only if it passes the gate on generated clips.
    quantize: bool = False

    def digest(self) -> str:
        text = json.dumps(self.digest_parts, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    return ckpt.checkpoint_digest(path)


def _common_digest_parts(*sources: Path) -> dict[str, str]:
    parts = {f"source:{p.name}": _file_sha256(p) for p in (Path(__file__).resolve(), *sources)}
    parts.update(torch=torch.__version__, onnx=onnx.__version__, opset=str(OPSET))
    return parts


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))


def _images(rng: np.random.Generator, batch: int, height: int, width: int) -> np.ndarray:
    """Random images normalised like MTCNN inputs ((x - 127.5) / 128)."""
    pixels = rng.uniform(0.0, 255.0, size=(batch, 3, height, width))
    return ((pixels - mtcnn.PIXEL_MEAN) * mtcnn.PIXEL_SCALE).astype(np.float32)


def _mtcnn_job(name: str) -> ExportJob:
    short = name.removeprefix("mtcnn_")
    weights = mtcnn.mtcnn_weights_dir() / f"{short}.pt"
    rng = _rng(name)
    index = {"pnet": 0, "rnet": 1, "onet": 2}[short]
    outputs: tuple[str, ...] = ("prob", "reg", "landmarks") if short == "onet" else ("prob", "reg")
    if short == "pnet":
        axes = {0: "batch", 2: "height", 3: "width"}
        trace = (_images(rng, 2, 60, 80),)
        checks = [(_images(rng, 1, 97, 131),), (_images(rng, 3, 48, 64),), (_images(rng, 1, 240, 320),)]
        out_axes = {0: "batch", 2: "out_height", 3: "out_width"}
    else:
        side = 24 if short == "rnet" else 48
        axes = out_axes = {0: "batch"}
        trace = (_images(rng, 2, side, side),)
        checks = [(_images(rng, n, side, side),) for n in (1, 5, 17)]
    return ExportJob(
        name=name,
        build=lambda: mtcnn.load_mtcnn()[index],
        input_names=("image",),
        output_names=outputs,
        dynamic_axes={"image": axes, **{o: out_axes for o in outputs}},
        trace_inputs=trace,
        check_inputs=checks,
        digest_parts={**_common_digest_parts(_CORE_DIR / "mtcnn.py"), "weights": _file_sha256(weights)},
    )


def _faces(rng: np.random.Generator, batch: int, frames: int) -> np.ndarray:
    """Random image-like crops (blocky colour fields + pixel noise), normalised for the classifier."""
    size = constants.CROP_SIZE
    blocks = rng.integers(0, 256, size=(batch * frames, size // 16, size // 16, 3))
    coarse = blocks.repeat(16, axis=1).repeat(16, axis=2)
    noisy = np.clip(coarse + rng.normal(0.0, 12.0, size=coarse.shape), 0, 255).astype(np.uint8)
    return normalize_crops(noisy).reshape(batch, frames, 3, size, size)


def _mask(rows: Sequence[Sequence[int]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)


def _differs(got: Any, want: Any) -> bool:
    try:
        return np.shape(got) != np.shape(want) or not np.allclose(got, want)
    except (TypeError, ValueError):
        return True


def _check_checkpoint_metadata(metadata: dict[str, Any]) -> None:
    """The serving pipeline crops and normalises with the constants: a checkpoint must agree with them."""
    expected = {
        "crop_size": constants.CROP_SIZE,
        "crop_margin": constants.CROP_MARGIN,
        "mean": list(constants.MEAN),
        "std": list(constants.STD),
    }
    wrong = {k: (metadata.get(k), want) for k, want in expected.items() if _differs(metadata.get(k), want)}
    if wrong:
        raise ValueError(f"checkpoint preprocessing differs from deepfake_core.constants {wrong} (got, want)")


def _classifier_job(checkpoint: Path | None, quantize: bool = False) -> ExportJob:
    name = constants.CLASSIFIER_MODEL
    rng = _rng(name)
    source = "untrained" if checkpoint is None else ckpt.checkpoint_digest(checkpoint)
    loaded: dict[str, Any] = {}

    def build() -> nn.Module:
        model, metadata = ckpt.load_or_untrained(checkpoint)
        _check_checkpoint_metadata(metadata)
        threshold = float(metadata["threshold"])
        if threshold != constants.DECISION_THRESHOLD:
            # Served scores read the same way whatever the checkpoint: PROB_FAKE >= 0.5 is FAKE (the stated class's
            # confidence is then always >= 50 %). The video logit is shifted by the threshold's logit.
            model.affine_logits(1.0, -logit(threshold))
            metadata = {**metadata, "threshold": constants.DECISION_THRESHOLD, "threshold_folded": threshold}
        loaded["metadata"] = metadata
        return ExportWrapper(model).eval()

    def metadata() -> dict[str, Any]:
        meta = dict(loaded["metadata"])
        meta.update(
            model=name,
            checkpoint_sha256=None if checkpoint is None else source,
            # where the gateway's Grad-CAM twin finds the same weights after a re-export (see gateway TwinFollower);
            # relative to the checkout when inside it
            checkpoint_path=None if checkpoint is None else portable_path(Path(checkpoint)),
            exported_with={"torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET},
        )
        return meta

    t = constants.NUM_FRAMES
    mask_32 = _mask([[0 if i in (3, 17, 31) else 1 for i in range(t)]])
    return ExportJob(
        name=name,
        build=build,
        input_names=ExportWrapper.input_names,
        output_names=ExportWrapper.output_names,
        dynamic_axes={
            "FACES": {0: "batch", 1: "frames"},
            "FACE_MASK": {0: "batch", 1: "frames"},
            "PROB_FAKE": {0: "batch"},
            "VIDEO_LOGIT": {0: "batch"},
            "FRAME_SCORES": {0: "batch", 1: "frames"},
            "FEATURE_MAPS": {0: "batch", 1: "frames"},
        },
        trace_inputs=(_faces(rng, 2, 3), _mask([[1, 1, 1], [1, 0, 1]])),
        check_inputs=[
            (_faces(rng, 1, t), mask_32),
            (_faces(rng, 3, 5), _mask([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])),
        ],
        digest_parts={
            **_common_digest_parts(*_CLASSIFIER_SOURCES),
            "checkpoint": source,
            **(_quantize_digest_parts() if quantize else {}),
        },
        metadata=metadata,
        quantize=quantize,
    )


def _quantize_digest_parts() -> dict[str, str]:
    from export import quantize

    return {
        "source:quantize.py": _file_sha256(Path(quantize.__file__).resolve()),
        "quantize": json.dumps(quantize.QUANTIZE_SETTINGS, sort_keys=True),
        "onnxruntime": ort.__version__,
    }


def _jobs(names: Sequence[str], checkpoint: Path | None, quantize: bool = False) -> list[ExportJob]:
    return [_classifier_job(checkpoint, quantize) if n == constants.CLASSIFIER_MODEL else _mtcnn_job(n) for n in names]


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _read_stamp(folder: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((folder / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _up_to_date(job: ExportJob, folder: Path, digest: str) -> bool:
    stamp = _read_stamp(folder)
    wanted = [folder / MODEL_FILE] + ([folder / METADATA_FILE] if job.metadata else [])
    return stamp is not None and stamp.get("digest") == digest and all(p.is_file() for p in wanted)


@contextmanager
def _new_dirs(folder: Path) -> Iterator[None]:
    """Create ``folder`` (and parents); on error remove the ones created here if they are still empty."""
    created = []
    for parent in reversed((folder, *folder.parents)):
        if not parent.exists():
            created.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for path in reversed(created):
            try:
                path.rmdir()
            except OSError:
                break
        raise


def _torch_outputs(module: nn.Module, inputs: Inputs) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(x) for x in inputs))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def _verify(job: ExportJob, module: nn.Module, onnx_path: Path) -> float:
    """Max abs difference between ORT and torch over the check inputs; raises ExportCheckError above ATOL."""
    try:
        onnx.checker.check_model(str(onnx_path))
    except onnx.checker.ValidationError as exc:
        raise ExportCheckError(f"{job.name}: invalid ONNX graph: {exc}") from exc
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got_inputs = tuple(i.name for i in session.get_inputs())
    got_outputs = tuple(o.name for o in session.get_outputs())
    if got_inputs != job.input_names or got_outputs != job.output_names:
        raise ExportCheckError(f"{job.name}: tensor names {got_inputs} -> {got_outputs}")
    worst = 0.0
    for inputs in job.check_inputs:
        expected = _torch_outputs(module, inputs)
        actual = session.run(list(job.output_names), dict(zip(job.input_names, inputs, strict=True)))
        for out_name, want, got in zip(job.output_names, expected, actual, strict=True):
            shapes = [x.shape for x in inputs]
            if want.shape != got.shape:
                message = f"{out_name} shape {got.shape} != torch {want.shape} for inputs {shapes}"
                raise ExportCheckError(f"{job.name}: {message}")
            relative = out_name in RELATIVE_OUTPUTS
            want, got = want.astype(np.float64), got.astype(np.float64)
            if out_name in FLOAT16_OUTPUTS:
                scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
            else:
                scale = np.maximum(1.0, np.abs(want)) if relative else 1.0
            diff = float(np.max(np.abs(want - got) / scale)) if want.size else 0.0
            limit = FLOAT16_OUTPUTS.get(out_name, ATOL)
            if not diff <= limit:  # also catches NaN
                raise ExportCheckError(
                    f"{job.name}: ONNX Runtime differs from torch on {out_name} by {diff:.3g} > {limit:g} "
                    f"for inputs {shapes}; nothing written"
                )
            if out_name not in FLOAT16_OUTPUTS:
                worst = max(worst, diff)
    return worst


def _export_one(job: ExportJob, folder: Path, digest: str) -> dict[str, Any]:
    start = time.perf_counter()
    module = job.build().eval()
    with _new_dirs(folder):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{MODEL_FILE}.", suffix=".tmp", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        tmp.chmod(FILE_MODE)
        quantization: dict[str, Any] | None = None
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # dynamo=False is deliberate (the dynamo exporter needs onnxscript): hide the deprecation.
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=__name__)
                torch.onnx.export(
                    module,
                    tuple(torch.from_numpy(x) for x in job.trace_inputs),
                    str(tmp),
                    input_names=list(job.input_names),
                    output_names=list(job.output_names),
                    dynamic_axes=job.dynamic_axes,
                    opset_version=OPSET,
                    do_constant_folding=True,
                    dynamo=False,
                )
            max_diff = _verify(job, module, tmp)
            quantization = _quantized(tmp, folder) if job.quantize else None
            if quantization is None or quantization["precision"] == "fp32":
                os.replace(tmp, folder / MODEL_FILE)
                (folder / FP32_FILE).unlink(missing_ok=True)
        finally:
            tmp.unlink(missing_ok=True)
    if job.metadata is not None:
        meta = job.metadata()
        meta["precision"] = "fp32" if quantization is None else quantization["precision"]
        meta["precision_reason"] = precision_reason(quantization)
        if quantization is not None:
            meta["quantization"] = quantization
        _atomic_write_text(folder / METADATA_FILE, _to_json(meta))
    stamp = {
        "format": STAMP_FORMAT,
        "model": job.name,
        "digest": digest,
        "inputs": job.digest_parts,
        "onnx_sha256": _file_sha256(folder / MODEL_FILE),
        "max_abs_diff": max_diff,
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _atomic_write_text(folder / STAMP_FILE, _to_json(stamp))
    served = "" if job.metadata is None else f", served {precision_reason(quantization)}"
    return {"max_abs_diff": max_diff, "seconds": time.perf_counter() - start, "served": served}


def _quantized(fp32_tmp: Path, folder: Path) -> dict[str, Any]:
    """INT8 into ``model.onnx`` with the float32 graph kept as ``model.fp32.onnx``, if the gate passes; else nothing
    is written here (the caller serves float32). Returns the gate's report with the precision served.

    Only the gate's refusal serves float32: any other failure (missing calibration dependencies, a quantiser error)
    raises QuantizationError, and nothing is written.
    """
    from export.quantize import quantize_with_gate

    int8_tmp = fp32_tmp.with_name(fp32_tmp.name + ".int8")
    try:
        try:
            accepted, report = quantize_with_gate(fp32_tmp, int8_tmp)
        except Exception as exc:
            raise QuantizationError(
                f"temporal_classifier: INT8 could not be tried ({type(exc).__name__}: {exc}); nothing written "
                "(--precision fp32 serves float32 on purpose)"
            ) from exc
        if accepted:
            int8_tmp.chmod(FILE_MODE)
            os.replace(fp32_tmp, folder / FP32_FILE)
            os.replace(int8_tmp, folder / MODEL_FILE)
    finally:
        int8_tmp.unlink(missing_ok=True)
    return {**report, "precision": "int8" if accepted else "fp32"}


def precision_reason(quantization: dict[str, Any] | None) -> str:
    """Why the classifier is served at its precision, from ``_quantized``'s report (None: INT8 not asked for)."""
    if quantization is None:
        return "fp32: asked for (--precision fp32, quantisation off)"
    delta, limit = quantization["gate_max_abs_prob_delta"], quantization["gate_limit"]
    where = f"on {quantization['gate_videos']} generated clips"
    if quantization["precision"] == "int8":
        return f"int8: passed the INT8 gate (|delta PROB_FAKE| {delta} <= {limit} {where})"
    return f"fp32: the INT8 gate refused (|delta PROB_FAKE| {delta} > {limit} {where})"


def served_identity(metadata: dict[str, Any]) -> ServedIdentity:
    """The identity Triton reports for the classifier exported with this metadata.json."""
    folded = metadata.get("threshold_folded")
    return ServedIdentity(
        version=str(metadata.get("version") or constants.UNTRAINED_VERSION),
        checkpoint_sha256=metadata.get("checkpoint_sha256"),
        precision=str(metadata.get("precision", "fp32")),
        threshold=float(metadata.get("threshold", constants.DECISION_THRESHOLD)),
        threshold_folded=None if folded is None else float(folded),
        checkpoint_path=metadata.get("checkpoint_path"),
        precision_reason=metadata.get("precision_reason"),
    )


def classifier_configs(model_dir: Path) -> list[Path]:
    """The classifier's configs Triton may read: config.pbtxt and configs/<name>.pbtxt (--model-config-name)."""
    return [p for p in [model_dir / "config.pbtxt", *sorted((model_dir / "configs").glob("*.pbtxt"))] if p.is_file()]


def write_served_identity(model_dir: Path) -> list[Path]:
    """Write the identity of the classifier exported in ``model_dir/1`` into its configs' parameters; returns the
    configs that changed (unchanged ones are not touched, so Triton in poll mode reloads only on a change)."""
    identity = served_identity(json.loads((model_dir / VERSION_DIR / METADATA_FILE).read_text(encoding="utf-8")))
    changed = []
    for config in classifier_configs(model_dir):
        text = config.read_text(encoding="utf-8")
        updated = with_identity(text, identity)
        if updated != text:
            _atomic_write_text(config, updated)
            changed.append(config)
    return changed


def export_models(
    model_repository: str | Path = DEFAULT_MODEL_REPOSITORY,
    checkpoint: str | Path | None = DEFAULT_CHECKPOINT,
    force: bool = False,
    only: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
    quantize: bool = False,
) -> dict[str, str]:
    """Export the models named in ``only`` (default: all); returns ``{name: "exported" | "skipped"}``.

    ``checkpoint=None`` exports the seeded untrained classifier. Raises ExportCheckError (writing nothing for
    that model) when ONNX Runtime and torch disagree by more than ATOL. ``quantize``: also try the classifier in
    INT8 (``export.quantize``), served only if it passes its gate; QuantizationError (nothing written for the
    classifier) when INT8 cannot be tried at all.
    """
    names = list(MODEL_NAMES if not only else dict.fromkeys(only))
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(MODEL_NAMES)}")
    repo = Path(model_repository)
    checkpoint_path = None if checkpoint is None else Path(checkpoint)
    results: dict[str, str] = {}
    for job in _jobs(names, checkpoint_path, quantize):
        folder = repo / job.name / VERSION_DIR
        digest = job.digest()
        if not force and _up_to_date(job, folder, digest):
            log(f"skipped  {job.name}: up to date ({folder / MODEL_FILE})")
            results[job.name] = "skipped"
            _write_identity(job, folder, log)
            continue
        info = _export_one(job, folder, digest)
        size = (folder / MODEL_FILE).stat().st_size
        log(
            f"exported {job.name}: {folder / MODEL_FILE} ({size / 1024:.0f} KiB, "
            f"max |ORT - torch| {info['max_abs_diff']:.2g}, {info['seconds']:.1f} s{info['served']})"
        )
        results[job.name] = "exported"
        _write_identity(job, folder, log)
    return results


def _write_identity(job: ExportJob, folder: Path, log: Callable[[str], None]) -> None:
    """After the classifier's export (or skip): its configs report what 1/ now holds."""
    if job.metadata is None:
        return
    for config in write_served_identity(folder.parent):
        log(f"identity {job.name}: {config} (parameters served.*)")
