"""ONNX Runtime backend and backend selection."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import vapoursynth as vs

from onnx_models import make_espcn_onnx
from test_support import onnx_dir, random2, random3  # noqa: F401
from vs_espcn import backends, models, precision
from vs_espcn.backends import ort as ort_backend


def test_run_matches_onnxruntime_and_shares_session(random3):
    import onnxruntime as ort

    info = models.load(random3)
    a = backends.create("ort", info, (20, 30), backends.OrtOptions(threads=1))
    b = backends.create("ort", info, (20, 30), backends.OrtOptions(threads=1))
    assert a._session is b._session  # one session per (model, options)
    c = backends.create("ort", info, (20, 30), backends.OrtOptions(threads=2))
    assert c._session is not a._session
    lr = np.random.default_rng(0).random((20, 30), dtype=np.float32)
    want = ort.InferenceSession(str(random3), providers=["CPUExecutionProvider"]).run(None, {"lr": lr[None, None]})
    got = a.run(lr)
    assert got.shape == (60, 90) and got.dtype == np.float32
    assert np.array_equal(got, want[0][0, 0])


def test_run_is_thread_safe(random2):
    info = models.load(random2)
    net = backends.create("ort", info, (33, 21))
    inputs = [np.random.default_rng(i).random((33, 21), dtype=np.float32) for i in range(8)]
    want = [net.run(x).copy() for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(net.run, inputs * 2))
    for i, g in enumerate(got):
        assert np.array_equal(g, want[i % 8])


def test_invalid_graph_is_vs_error(tmp_path):
    """A file with valid metadata whose graph onnxruntime rejects must give vs.Error, not crash."""
    path = make_espcn_onnx(tmp_path / "m.onnx", 2, "random")
    m = onnx.load(path)
    m.graph.node[2].op_type = "NoSuchOp"
    onnx.save(m, path)
    with pytest.raises(vs.Error, match="espcn.Upscale: onnxruntime cannot load model"):
        backends.create("ort", models.load(path), (8, 8))


def test_unknown_kind(random2):
    with pytest.raises(vs.Error, match="unknown backend"):
        backends.create("cuda", models.load(random2), (8, 8))


def test_options_are_frozen_keyword_only():
    with pytest.raises(TypeError):
        backends.TrtOptions(True)  # keyword-only
    opts = backends.TrtOptions(fp16=False, workspace=512)
    with pytest.raises(Exception):
        opts.fp16 = True
    assert backends._split(opts).trt is opts and backends._split(None).ort == backends.OrtOptions()


def test_auto_warns_once_only_with_gpu(monkeypatch, caplog, random2):
    info = models.load(random2)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))  # OpenVINO first
    monkeypatch.setattr(backends, "ov_status", lambda: (True, ""))
    monkeypatch.setattr(backends, "_create_ov", lambda *a: (_ for _ in ()).throw(RuntimeError("no ov")))
    monkeypatch.setattr(backends, "trt_status", lambda device_id=0: (False, "no libnvinfer"))
    monkeypatch.setattr(backends, "_warned", set())
    monkeypatch.setattr(backends, "gpu_present", lambda: False)
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        assert isinstance(backends.create("auto", info, (8, 8)), ort_backend.OrtBackend)
    assert [r.getMessage() for r in caplog.records] == [
        "espcn.Upscale: OpenVINO unusable (RuntimeError: no ov); using ONNX Runtime"]  # no TensorRT line
    caplog.clear()
    monkeypatch.setattr(backends, "_warned", set())
    monkeypatch.setattr(backends, "gpu_present", lambda: True)
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        backends.create("auto", info, (8, 8))
        backends.create("auto", info, (8, 8))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "TensorRT unusable (no libnvinfer)" in messages[0]
    assert "OpenVINO unusable (RuntimeError: no ov)" in messages[1]


def test_auto_falls_back_when_trt_build_fails(monkeypatch, random2):
    monkeypatch.setattr(backends, "trt_status", lambda device_id=0: (True, ""))
    monkeypatch.setattr(backends, "gpu_present", lambda: False)

    def broken(*args):
        raise RuntimeError("engine build failed")

    monkeypatch.setattr(backends, "_create_trt", broken)
    monkeypatch.setattr(backends, "ov_status", lambda: (False, "openvino is not installed"))
    assert isinstance(backends.create("auto", models.load(random2), (8, 8)), ort_backend.OrtBackend)
    with pytest.raises(RuntimeError):
        backends.create("trt", models.load(random2), (8, 8))



@pytest.mark.parametrize("fmt", [vs.GRAYS, vs.GRAY8])
def test_border_is_the_picture_mirrored(random2, fmt):
    """At the picture's edge the network sees the picture mirrored (edge pixel repeated), not its zero
    padding: upscaling a plane equals the middle of upscaling that plane mirrored outward by 4 px
    (the model's receptive radius), whatever the frame format; framing it with zeros instead differs."""
    from test_support import mirror_clip, noise_clip, plane
    from vs_espcn import graph

    clip = noise_clip(fmt, 40, 22, length=1)
    out = plane(graph.upscale(clip, model=str(random2), backend="ort")).astype(np.float64)
    wide, framed = (plane(graph.upscale(mirror_clip(clip, 4, zero), model=str(random2), backend="ort"))[8:-8, 8:-8]
                    for zero in (False, True))
    assert np.abs(out - wide).max() <= (1e-5 if fmt == vs.GRAYS else 0)
    assert np.abs(out - framed).max() > (1e-3 if fmt == vs.GRAYS else 1)


def _with_tail(model, nodes, out_type=onnx.TensorProto.FLOAT):
    """Append `nodes` after the factory model's output `hr` (renamed `hr0`); new output `hr`."""
    from onnx import helper

    for n in model.graph.node:
        if n.output[0] == "hr":
            n.output[0] = "hr0"
    model.graph.node.extend(nodes)
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("hr", out_type, ["N", 1, "A", "B"]))
    return model


def test_model_secretly_fixed_size_fails_at_load(tmp_path):
    """Declared dynamic, but a Reshape pins the output to 16x16 (an 8x8 network): refused when the
    backend is created (its trial run on an odd-sized input fails), not at get_frame."""
    from onnx import helper, numpy_helper

    from onnx_models import espcn_model

    m = _with_tail(espcn_model(2), [helper.make_node("Reshape", ["hr0", "shape"], ["hr"])])
    m.graph.initializer.append(numpy_helper.from_array(np.array([1, 1, 16, 16], np.int64), "shape"))
    onnx.save(m, tmp_path / "fixed.onnx")
    info = models.load(tmp_path / "fixed.onnx")
    with pytest.raises(vs.Error, match="espcn.Upscale: model .* fails on a 9x7 input"):
        backends.create("ort", info, (64, 64))


def test_model_with_double_output_fails_at_load(tmp_path):
    from onnx import helper

    from onnx_models import espcn_model

    m = _with_tail(espcn_model(2), [helper.make_node("Cast", ["hr0"], ["hr"], to=onnx.TensorProto.DOUBLE)],
                   onnx.TensorProto.DOUBLE)
    onnx.save(m, tmp_path / "f64.onnx")
    with pytest.raises(vs.Error, match=r"espcn.Upscale: model .* expected float32\(1, 1, 18, 14\)"):
        backends.create("ort", models.load(tmp_path / "f64.onnx"), (64, 64))


def test_trt_probe_asks_about_the_requested_device(monkeypatch, random2):
    """backend="trt"/"auto" probe the CUDA device of `device_id`, not always device 0."""
    from vs_espcn.backends import trt

    asked = []
    monkeypatch.setattr(trt, "trt_available", lambda device_id=0: asked.append(device_id) or
                        (False, f"device {device_id} is busy"))
    info = models.load(random2)
    with pytest.raises(vs.Error, match="device 3 is busy"):
        backends.create("trt", info, (8, 8), backends.TrtOptions(device_id=3))
    backends.create("auto", info, (8, 8), backends.TrtOptions(device_id=2))
    assert asked == [3, 2]


def test_trt_probe_without_device_keyword_still_works(monkeypatch):
    """An older trt_available() without the keyword is still asked (graceful fallback)."""
    from vs_espcn.backends import trt

    monkeypatch.setattr(trt, "trt_available", lambda: (False, "legacy probe"))
    assert backends.trt_status(1) == (False, "legacy probe")
