"""INT8 quantisation of the classifier (export.quantize): the graph it writes, and the served model's gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from export.quantize import MAX_PROB_DELTA, generated_batches, prob_fake, quantize_classifier, session
from training.faces_cache import FaceExtractor, onnx_nets


@pytest.fixture(scope="module")
def classifier_dir(model_repository: Path) -> Path:
    return model_repository / "temporal_classifier" / "1"


@pytest.fixture(scope="module")
def metadata(classifier_dir: Path) -> dict:
    return json.loads((classifier_dir / "metadata.json").read_text())


@pytest.fixture(scope="module")
def fp32_graph(classifier_dir: Path, metadata: dict) -> Path:
    """The served classifier's float32 graph (next to the INT8 one when INT8 is served)."""
    return classifier_dir / ("model.fp32.onnx" if metadata.get("precision") == "int8" else "model.onnx")


@pytest.fixture(scope="module")
def held_out(model_repository: Path) -> list:
    """Served crops of a generated clip of a size neither the calibration nor the export's gate uses."""
    extractor = FaceExtractor(cache_dir=None, nets=onnx_nets(model_repository))
    return generated_batches(((800, 450),), augmented=1, seed=7, extractor=extractor)


def test_quantized_graph_is_qdq_int8_with_a_float_head(
    fp32_graph: Path, held_out: list, tmp_path: Path, model_repository: Path
) -> None:
    out = tmp_path / "int8.onnx"
    extractor = FaceExtractor(cache_dir=None, nets=onnx_nets(model_repository))
    calibration = generated_batches(((640, 360),), augmented=0, seed=0, chunk=8, extractor=extractor)
    quantize_classifier(fp32_graph, out, calibration)

    graph = onnx.load(str(out)).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    for conv in convs:
        weight = produced_by.get(conv.input[1])
        kernel = next(a.ints for a in conv.attribute if a.name == "kernel_shape")
        quantized = weight is not None and weight.op_type == "DequantizeLinear"
        assert quantized == (len(kernel) == 2), f"{conv.name}: kernel {list(kernel)}, weight quantised {quantized}"
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)

    fp32, int8 = session(fp32_graph), session(out)
    faces, mask = held_out[0]
    feeds = {"FACES": faces, "FACE_MASK": mask}
    want, got = fp32.run(None, feeds), int8.run(None, feeds)
    assert [o.name for o in int8.get_outputs()] == [o.name for o in fp32.get_outputs()]
    for a, b in zip(want, got, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert np.isfinite(b.astype(np.float32)).all()
    assert 0.0 <= float(got[0][0, 0]) <= 1.0


def test_served_classifier_precision_follows_its_gate(
    classifier_dir: Path, metadata: dict, fp32_graph: Path, held_out: list
) -> None:
    """INT8 is served only within MAX_PROB_DELTA of float32 on generated faces; a refusal says by how much it moved."""
    if "quantization" not in metadata:
        pytest.skip("exported with --precision fp32: no INT8 attempted")
    report = metadata["quantization"]
    assert metadata["precision_reason"].startswith(f"{metadata['precision']}: ")
    assert str(report["gate_max_abs_prob_delta"]) in metadata["precision_reason"]
    if metadata["precision"] == "int8":
        assert report["gate_max_abs_prob_delta"] <= MAX_PROB_DELTA
        assert "passed the INT8 gate" in metadata["precision_reason"]
        want = prob_fake(session(fp32_graph), held_out)
        got = prob_fake(session(classifier_dir / "model.onnx"), held_out)
        assert float(np.max(np.abs(got - want))) <= MAX_PROB_DELTA, (want, got)
    else:
        assert metadata["precision"] == "fp32" and not (classifier_dir / "model.fp32.onnx").exists()
        assert report["gate_max_abs_prob_delta"] > MAX_PROB_DELTA
        assert "the INT8 gate refused" in metadata["precision_reason"]
