"""fp16 ONNX conversion (the precision path of TensorRT >= 11 / TensorRT-RTX), checked with onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from tests.onnx_models import make_espcn_onnx
from tests.trt_helpers import shipped_models
from vs_espcn.fp16 import convert_bytes_fp16


def _run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def _models(tmp_path):
    made = [make_espcn_onnx(tmp_path / f"r{s}.onnx", s, seed=s) for s in (2, 3, 4)]
    return made + shipped_models()


def test_fp16_model_matches_fp32_within_fp16_tolerance(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(16 / 255, 235 / 255, (1, 1, 37, 53)).astype(np.float32)
    for path in _models(tmp_path):
        fp32 = path.read_bytes()
        fp16 = convert_bytes_fp16(fp32)
        onnx.checker.check_model(onnx.load_from_string(fp16))
        a, b = _run(fp32, x), _run(fp16, x)
        assert b.dtype == np.float32 and b.shape == a.shape
        assert _psnr(a, b) >= 50.0, path
        assert np.abs(a - b).max() < 2e-2, path


def test_fp16_model_structure(tmp_path):
    model = onnx.load_from_string(convert_bytes_fp16(make_espcn_onnx(tmp_path / "m.onnx", 2).read_bytes()))
    g = model.graph
    assert [i.name for i in g.input] == ["lr"] and [o.name for o in g.output] == ["hr"]
    assert g.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert g.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert {t.data_type for t in g.initializer} == {TensorProto.FLOAT16}
    assert g.node[0].op_type == "Cast" and g.node[-1].op_type == "Cast"
    assert {p.key: p.value for p in model.metadata_props}["scale"] == "2"


def test_fp16_clips_out_of_range_weights(tmp_path):
    path = make_espcn_onnx(tmp_path / "m.onnx", 2)
    model = onnx.load(path)
    w = onnx.numpy_helper.to_array(model.graph.initializer[1]).copy()
    w[0] = 1e6
    model.graph.initializer[1].CopyFrom(onnx.numpy_helper.from_array(w, model.graph.initializer[1].name))
    half = onnx.load_from_string(convert_bytes_fp16(model.SerializeToString()))
    arr = onnx.numpy_helper.to_array(half.graph.initializer[1])
    assert np.isfinite(arr).all() and arr[0] == np.float16(65504)


@pytest.mark.parametrize("scale", [2, 3])
def test_nearest_model_stays_exact_on_fp16_grid(tmp_path, scale):
    """Known-answer model: with inputs exactly representable in fp16, fp16 output == nearest."""
    path = make_espcn_onnx(tmp_path / "n.onnx", scale, weights="nearest", activation="relu")
    x = (np.arange(7 * 9, dtype=np.float32).reshape(1, 1, 7, 9) / 64.0).astype(np.float32)
    out = _run(convert_bytes_fp16(path.read_bytes()), x)
    np.testing.assert_array_equal(out[0, 0], np.repeat(np.repeat(x[0, 0], scale, 0), scale, 1))


@pytest.mark.parametrize("activation", ["prelu", "tanh"])
def test_fp16_conversion_of_trainer_exported_graph(activation):
    """The trainer's exporter (PReLU slopes are initializers too) converts and stays within bound."""
    pytest.importorskip("torch")
    from trainer.export import build_graph
    from trainer.model import ESPCN, ESPCNConfig

    fp32 = build_graph(ESPCN(ESPCNConfig(scale=3, activation=activation)).eval()).SerializeToString()
    x = np.random.default_rng(2).uniform(16 / 255, 235 / 255, (1, 1, 29, 31)).astype(np.float32)
    assert _psnr(_run(fp32, x), _run(convert_bytes_fp16(fp32), x)) >= 50.0
