"""INT8 static quantisation of the exported classifier (ONNX Runtime, QDQ format), for any checkpoint.

``python -m export`` runs it after the float32 export (``--precision fp32`` skips it): the float32 graph is kept as
``model.fp32.onnx`` and the quantised one is served as ``model.onnx`` (QDQ, so the same file also gives TensorRT an
INT8 engine on GPU). Nothing here needs ../shared:

- calibration: the crops the serving pipeline cuts from generated face clips (``deepfake_core.sample_clip``, three frame
  sizes), each clip clean and with ``training.augment``'s re-compression / scaling / colour draws;
- gate: PROB_FAKE of the two graphs on held-out generated clips (other sizes, other augmentation seeds). Above
  ``MAX_PROB_DELTA`` the float32 graph is served instead, with a message.

``python -m export.quantize_gate`` reports the same delta and the AUC of both graphs on real clips.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from deepfake_core import constants as C
from deepfake_core.preprocess import normalize_crops
from training.augment import augment_clip
from training.datasets import REAL, Sample
from training.faces_cache import FaceExtractor

__all__ = [
    "CALIBRATION_SIZES",
    "GATE_SIZES",
    "MAX_PROB_DELTA",
    "QUANTIZE_SETTINGS",
    "Batch",
    "generated_batches",
    "prob_fake",
    "quantize_classifier",
]

# Accept the quantised graph only if no video's PROB_FAKE moves by more than this (issue 15's rule).
MAX_PROB_DELTA = 0.02
# (width, height) of the generated clips: calibration and gate use different sizes, so different crops.
CALIBRATION_SIZES: tuple[tuple[int, int], ...] = ((1280, 720), (640, 360), (360, 640))
GATE_SIZES: tuple[tuple[int, int], ...] = ((960, 540), (480, 854))
# Only the frame encoder's (2-D) convolutions, ~all of the compute, are quantised; the temporal head (its 1-D
# convolutions, MatMuls, pooling) and the outputs stay float32. Per-channel weights, uint8 activations
# (ORT's fast U8S8 kernels on x86), MinMax ranges. Part of the export stamp: changing them re-exports.
QUANTIZE_SETTINGS: dict[str, object] = {
    "format": "QDQ",
    "op_types": ["Conv"],
    "excluded": "1-D Conv (temporal head)",
    "per_channel": True,
    "activation": "QUInt8",
    "weight": "QInt8",
    "method": "MinMax",
    "calibration_sizes": [list(s) for s in CALIBRATION_SIZES],
    "augmented_per_clip": 3,
    "chunk_frames": 8,
}

Batch = tuple[np.ndarray, np.ndarray]  # FACES [1, F, 3, 224, 224] float32, FACE_MASK [1, F] float32


@dataclass(frozen=True)
class _Clip:
    crops: np.ndarray  # uint8 [T, 224, 224, 3]
    present: np.ndarray  # bool [T]


def _served_crops(sizes: Sequence[tuple[int, int]], extractor: FaceExtractor, workdir: Path) -> list[_Clip]:
    from deepfake_core.sample_clip import face_video

    clips = []
    for width, height in sizes:
        path = workdir / f"face-{width}x{height}.mp4"
        face_video(path, width=width, height=height, fps=25, seconds=2.0)
        clip = extractor.extract(Sample(path=path, label=REAL, group=path.stem, source="generated"))
        if clip.present.any():
            clips.append(_Clip(clip.crops, clip.present))
    if not clips:
        raise RuntimeError("no face found in the generated clips: cannot calibrate")
    return clips


def generated_batches(
    sizes: Sequence[tuple[int, int]],
    augmented: int,
    seed: int,
    chunk: int | None = None,
    extractor: FaceExtractor | None = None,
) -> list[Batch]:
    """Served crops of generated face clips of ``sizes``: each clip clean and ``augmented`` times augmented.

    ``chunk``: split every clip into batches of that many frames (calibration memory); None: one batch per clip.
    """
    extractor = extractor or FaceExtractor(num_frames=C.NUM_FRAMES, cache_dir=None)
    with tempfile.TemporaryDirectory(prefix="calibration-") as tmp:
        clips = _served_crops(sizes, extractor, Path(tmp))
    rng = np.random.default_rng(seed)
    batches: list[Batch] = []
    for clip in clips:
        variants = [clip.crops] + [augment_clip(clip.crops, clip.present, rng) for _ in range(augmented)]
        mask = clip.present.astype(np.float32)
        for crops in variants:
            faces = normalize_crops(crops)
            step = chunk or len(faces)
            for start in range(0, len(faces), step):
                batches.append((faces[None, start : start + step], mask[None, start : start + step]))
    return batches


class _Reader(CalibrationDataReader):
    def __init__(self, batches: Sequence[Batch]) -> None:
        self._it: Iterator[Batch] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {"FACES": batch[0], "FACE_MASK": batch[1]}


def quantize_classifier(fp32_path: Path, out_path: Path, calibration: Sequence[Batch]) -> None:
    """Write the QDQ INT8 version of the float32 classifier ``fp32_path`` to ``out_path``."""
    with tempfile.TemporaryDirectory(prefix="quantize-", dir=out_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Symbolic shape inference cannot follow the temporal head's reshapes; ONNX's own inference suffices.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        # 1-D convolutions belong to the temporal head (the frame encoder's are 2-D): they stay float32.
        graph = onnx.load(str(prepared), load_external_data=False).graph
        head_convs = [
            n.name
            for n in graph.node
            if n.op_type == "Conv" and any(a.name == "kernel_shape" and len(a.ints) == 1 for a in n.attribute)
        ]
        quantize_static(
            str(prepared),
            str(out_path),
            _Reader(calibration),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=head_convs,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,  # keeps only per-batch min/max, not the activations
        )


def session(path: Path, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def prob_fake(model: ort.InferenceSession, batches: Sequence[Batch]) -> np.ndarray:
    """PROB_FAKE of each batch (one video each)."""
    return np.array([float(model.run(["PROB_FAKE"], {"FACES": f, "FACE_MASK": m})[0][0, 0]) for f, m in batches])


def quantize_with_gate(
    fp32_path: Path, out_path: Path, log: Callable[[str], None] = print
) -> tuple[bool, dict[str, object]]:
    """Quantise, then compare with the float32 graph on held-out generated clips.

    Returns (accepted, report); when not accepted ``out_path`` is not written.
    """
    calibration = generated_batches(CALIBRATION_SIZES, 3, seed=0, chunk=8)
    held_out = generated_batches(GATE_SIZES, 3, seed=1)
    tmp = out_path.with_name(f".{out_path.name}.int8.tmp")
    try:
        quantize_classifier(fp32_path, tmp, calibration)
        want = prob_fake(session(fp32_path), held_out)
        got = prob_fake(session(tmp), held_out)
        delta = float(np.max(np.abs(got - want)))
        report: dict[str, object] = {
            "settings": QUANTIZE_SETTINGS,
            "gate_videos": len(held_out),
            "gate_max_abs_prob_delta": round(delta, 5),
            "gate_limit": MAX_PROB_DELTA,
        }
        accepted = delta <= MAX_PROB_DELTA
        if accepted:
            tmp.replace(out_path)
        else:
            log(f"INT8 classifier refused: PROB_FAKE moved by {delta:.3f} > {MAX_PROB_DELTA} on generated clips")
        return accepted, report
    finally:
        tmp.unlink(missing_ok=True)
