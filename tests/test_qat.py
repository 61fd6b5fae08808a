"""Quantization-aware training: fake-quantized convs, their QDQ export (OpenVINO and ONNX Runtime load it
and match torch), and a QAT run from an fp32 model starting at the post-training-quantized loss."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="trainer tests need torch (pip install .[train])")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from test_trainer import _cfg  # noqa: E402
from trainer import export as export_mod  # noqa: E402
from trainer import quant  # noqa: E402
from trainer import train as train_mod  # noqa: E402
from trainer.model import ESPCN, ESPCNConfig, load_model  # noqa: E402


def test_fake_quant_conv_rounds_like_int8():
    """The QAT conv equals a float conv on uint8-rounded input and int8-rounded per-channel weights."""
    torch.manual_seed(0)
    conv = quant.quant_conv(1, 4, 3, 3, padding=1)
    x = torch.rand(1, 4, 9, 9) * 2 - 1
    s = conv.weight.detach().abs().amax(dim=(1, 2, 3)) / 127
    wq = torch.round(conv.weight.detach() / s[:, None, None, None]) * s[:, None, None, None]
    xq = (torch.round(x / (2 / 255)) .clamp(-128, 127)) * (2 / 255)
    ref = torch.nn.functional.conv2d(xq, wq, conv.bias, padding=1)
    assert torch.allclose(conv(x), ref, atol=1e-6)
    assert not torch.allclose(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-4)
    assert quant.act_qparams(0) == (1 / 255, 0)  # 8-bit luma codes are exact


def test_qat_export_is_qdq_and_runs_in_openvino_and_onnxruntime(image_dir, tmp_path):
    ckpt = train_mod.train(_cfg(image_dir, tmp_path, steps=4, qat=(1, 2)))
    out = export_mod.export(str(ckpt), str(tmp_path / "q.onnx"))
    model = onnx.load(out)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == 2 and ops.count("DequantizeLinear") == 4
    assert json.loads({p.key: p.value for p in model.metadata_props}["arch"])["quant"] == [1, 2]
    x = np.random.default_rng(1).random((1, 1, 19, 23), dtype=np.float32)
    ref = load_model(str(ckpt))(torch.from_numpy(x)).detach().numpy()
    got_ort = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
    assert np.abs(got_ort - ref).max() <= export_mod.QUANT_TOLERANCE
    assert export_mod.openvino_parity_error(load_model(str(ckpt)), model) <= export_mod.OV_TOLERANCE


def test_export_refuses_an_int8_model_openvino_disagrees_with(image_dir, tmp_path, monkeypatch):
    ckpt = train_mod.train(_cfg(image_dir, tmp_path, steps=4, qat=(1,)))
    monkeypatch.setattr(export_mod, "openvino_parity_error", lambda net, model: 0.5)
    with pytest.raises(SystemExit, match="OpenVINO int8 differs"):
        export_mod.export(str(ckpt), str(tmp_path / "bad.onnx"))
    assert not (tmp_path / "bad.onnx").exists()


def test_qat_from_fp32_starts_at_the_ptq_loss_and_goes_down(image_dir, tmp_path):
    """A --qat run initialised from an exported fp32 model begins as exactly the post-training-quantized
    network (same weights, fake-quantized) and training lowers its loss."""
    fp32 = train_mod.train(_cfg(image_dir, tmp_path, steps=150, lr=3e-3, ckpt_every=150, eval_every=150))
    onnx_fp32 = export_mod.export(str(fp32), str(tmp_path / "fp32.onnx"))
    ptq = ESPCN(ESPCNConfig(quant=(1, 2)))
    ptq.load_state_dict(load_model(str(fp32)).state_dict())  # a float state: act_range stays ones
    start = ESPCN(ESPCNConfig(quant=(1, 2)))
    train_mod.init_from(start, str(onnx_fp32))  # what the QAT run does first
    lr, hr, w = train_mod.PatchSampler(train_mod.load_pairs(image_dir, 2), 2, 12, False, 5).batch(32)
    x = torch.from_numpy(lr)

    def loss(net: ESPCN) -> float:
        with torch.no_grad():
            return float(train_mod.loss_fn("l2", net(x), torch.from_numpy(hr), torch.from_numpy(w)))

    assert torch.equal(start(x), ptq(x))
    qat = train_mod.train(_cfg(image_dir, tmp_path, out=str(tmp_path / "qat"), steps=150, lr=1e-3, warmup=0,
                               ckpt_every=150, eval_every=150, qat=(1, 2), init_from=str(onnx_fp32)))
    assert loss(load_model(str(qat))) < loss(ptq)


def test_an_int8_onnx_restores_its_dequantized_weights(image_dir, tmp_path):
    """init_from / --distill from an int8 export gets every tensor, the int8 conv as it ran (int8 x scale),
    so the network equals the QDQ file; a teacher that cannot be fully loaded is refused."""
    from trainer.model import state_from_onnx

    ckpt = train_mod.train(_cfg(image_dir, tmp_path, steps=4, qat=(1,)))
    out = export_mod.export(str(ckpt), str(tmp_path / "q.onnx"))
    state = state_from_onnx(str(out))
    assert set(state) == set(ESPCN(ESPCNConfig()).state_dict())
    net = ESPCN(ESPCNConfig())
    assert train_mod.init_from(net, str(out)) == 6
    x = np.random.default_rng(2).random((1, 1, 15, 19), dtype=np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
    # the float net on dequantized weights differs from the QDQ file only by the input rounding of conv 1
    assert np.abs(net(torch.from_numpy(x)).detach().numpy() - got).max() < 0.05
    x3 = _cfg(image_dir, tmp_path, scale=3, init_from=str(out), distill=True, qat=(1,))
    with pytest.raises(SystemExit, match="sets only 4 of the teacher's 6 tensors"):
        train_mod.teacher_for(x3)
    with pytest.raises(ValueError, match="qat layers must be conv indices 0..2"):
        _cfg(image_dir, tmp_path, qat=(5,))


def test_calibrated_ranges_are_each_channels_peak_and_leave_the_conv_unchanged_in_float():
    """calibrate() sets a tanh input's per-channel range to the largest |value| the channel took (capped
    at 1), and conv(x / r, w * r) is the float conv: only the int8 rounding sees the ranges."""
    torch.manual_seed(3)
    net = ESPCN(ESPCNConfig(quant=(1,)))
    with torch.no_grad():  # small features: tanh's whole range would leave them few codes
        net.body[0].weight.mul_(0.1)
    planes = [np.random.default_rng(i).random((14, 17), dtype=np.float32) for i in range(3)]
    seen = []
    hook = net.body[2].register_forward_pre_hook(lambda m, a: seen.append(a[0].abs().amax((0, 2, 3))))
    from trainer.model import calibrate_ranges, upscale_plane

    for y in planes:
        upscale_plane(net, y)
    hook.remove()
    (ranges,) = calibrate_ranges(net, planes)
    peak = torch.stack(seen).amax(0)
    assert torch.equal(ranges, peak.clamp(quant.RANGE_MIN, 1.0)) and ranges.max() < 1.0
    conv = net.body[2]
    x = torch.tanh(torch.randn(1, 64, 6, 7))
    ranged = torch.nn.functional.conv2d(x / ranges.view(1, -1, 1, 1), conv.ranged_weight(), conv.bias)
    assert torch.allclose(ranged, torch.nn.functional.conv2d(x, conv.weight, conv.bias), atol=1e-5)
    full = ESPCN(ESPCNConfig(quant=(1,)))
    full.load_state_dict({k: v for k, v in net.state_dict().items() if "act_range" not in k}, strict=False)
    y = torch.from_numpy(planes[0])[None, None]
    ref = ESPCN(ESPCNConfig())
    ref.load_state_dict(full.state_dict(), strict=False)
    with torch.no_grad():  # finer codes on the channels' own ranges: much closer to the float net

        assert (net(y) - ref(y)).abs().mean() < 0.5 * (full(y) - ref(y)).abs().mean()


def test_calibrated_qat_exports_a_div_that_both_runtimes_match_and_restores(image_dir, tmp_path):
    """--qat_ranges calibrated: the ranges are set before the first step, kept by the checkpoint, written
    as a Div before QuantizeLinear (weights x ranges in int8), matched by ONNX Runtime and OpenVINO, and
    read back by state_from_onnx as the same ranges and weights."""
    from trainer.model import state_from_onnx

    fp32 = export_mod.export(str(train_mod.train(_cfg(image_dir, tmp_path, out=str(tmp_path / "fp32"), steps=4))),
                             str(tmp_path / "fp32.onnx"))
    ckpt = train_mod.train(_cfg(image_dir, tmp_path, steps=4, qat=(1,), qat_ranges="calibrated",
                                init_from=str(fp32)))
    net = load_model(str(ckpt))
    ranges = net.body[2].act_range
    assert 0 < ranges.min() and ranges.max() < 1.0
    out = export_mod.export(str(ckpt), str(tmp_path / "q.onnx"))
    model = onnx.load(out)
    ops = [n.op_type for n in model.graph.node]
    assert ops.index("Div") + 1 == ops.index("QuantizeLinear")
    x = np.random.default_rng(4).random((1, 1, 21, 18), dtype=np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= export_mod.QUANT_TOLERANCE
    assert export_mod.openvino_parity_error(net, model) <= export_mod.OV_TOLERANCE
    state = state_from_onnx(str(out))
    assert torch.allclose(state["body.2.act_range"], ranges)
    back = ESPCN(ESPCNConfig(quant=(1,)))
    back.load_state_dict(state)
    with torch.no_grad():
        assert np.abs(back(torch.from_numpy(x)).numpy() - got).max() <= export_mod.QUANT_TOLERANCE
    with pytest.raises(ValueError, match="qat_ranges must be one of full, calibrated"):
        _cfg(image_dir, tmp_path, qat=(1,), qat_ranges="learned")
    for bad in (dict(qat=(1,)), dict(qat=(0,), init_from=str(fp32))):
        with pytest.raises(ValueError, match="calibrated needs a --qat layer on a tanh input"):
            _cfg(image_dir, tmp_path, qat_ranges="calibrated", **bad)


def test_ranges_survive_resume_and_never_leak_into_a_full_run(image_dir, tmp_path, monkeypatch):
    """A resumed calibrated run keeps its checkpoint's ranges (no second calibration) and refuses to switch
    qat_ranges; a `full` run started from a calibrated file is back on tanh's whole range (no Div); a state
    without ranges (a float net, an older checkpoint) loads as ones."""
    fp32 = export_mod.export(str(train_mod.train(_cfg(image_dir, tmp_path, out=str(tmp_path / "fp32"), steps=4))),
                             str(tmp_path / "fp32.onnx"))
    kw = dict(out=str(tmp_path / "cal"), qat=(1,), qat_ranges="calibrated", init_from=str(fp32), ckpt_every=2)
    first = load_model(str(train_mod.train(_cfg(image_dir, tmp_path, steps=2, **kw)))).body[2].act_range
    assert first.max() < 1.0
    monkeypatch.setattr(train_mod, "calibrate", lambda *a, **k: pytest.fail("a resumed run calibrated again"))
    resumed = train_mod.train(_cfg(image_dir, tmp_path, steps=4, **kw), resume=True)
    assert torch.equal(load_model(str(resumed)).body[2].act_range, first)
    with pytest.raises(SystemExit, match="holds qat_ranges 'calibrated'; it cannot change to 'full'"):
        train_mod.train(_cfg(image_dir, tmp_path, steps=6, **{**kw, "qat_ranges": "full"}), resume=True)
    cal_onnx = export_mod.export(str(resumed), str(tmp_path / "cal.onnx"))
    full = train_mod.train(_cfg(image_dir, tmp_path, out=str(tmp_path / "full"), steps=2, qat=(1,),
                                init_from=str(cal_onnx)))
    assert torch.equal(load_model(str(full)).body[2].act_range, torch.ones(64))
    ops = [n.op_type for n in onnx.load(export_mod.export(str(full), str(tmp_path / "full.onnx"))).graph.node]
    assert "Div" not in ops and "QuantizeLinear" in ops
    old = {k: v for k, v in load_model(str(resumed)).state_dict().items() if "act_range" not in k}
    net = ESPCN(ESPCNConfig(quant=(1,)))
    net.load_state_dict(old)  # strict: the missing buffer is filled
    assert torch.equal(net.body[2].act_range, torch.ones(64))


def test_openvino_parity_without_vnni_runs_halved_codes_against_onnxruntime(image_dir, tmp_path, monkeypatch):
    """Without VNNI OpenVINO's int8 sums saturate at int16, so the export check halves the weight codes
    (|w| <= 63) and compares OpenVINO with ONNX Runtime on that copy; with VNNI it compares with torch. A file
    that drops the ranges' Div fails the torch comparisons (OpenVINO with VNNI, ONNX Runtime always)."""
    fp32 = export_mod.export(str(train_mod.train(_cfg(image_dir, tmp_path, out=str(tmp_path / "fp32"), steps=4))),
                             str(tmp_path / "fp32.onnx"))
    ckpt = train_mod.train(_cfg(image_dir, tmp_path, steps=4, qat=(1,), qat_ranges="calibrated",
                                init_from=str(fp32)))
    net = load_model(str(ckpt))
    model = export_mod.build_graph(net)
    half = export_mod.halved_codes(model)
    codes = [onnx.numpy_helper.to_array(t) for t in half.graph.initializer if t.name.endswith(".weight.int8")]
    full = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith(".weight.int8")]
    assert np.abs(codes[0]).max() <= 63 and np.array_equal(codes[0], np.clip(np.rint(full[0] / 2), -63, 63))
    assert np.abs(full[0]).max() == 127  # the original is untouched
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    div = next(n for n in broken.graph.node if n.op_type == "Div")
    at = list(broken.graph.node).index(div)
    broken.graph.node.remove(div)
    broken.graph.node.insert(at, onnx.helper.make_node("Identity", [div.input[0]], [div.output[0]]))
    assert export_mod.parity_error(net, broken) > export_mod.QUANT_TOLERANCE
    for vnni in (False, True):
        monkeypatch.setattr(export_mod, "cpu_has_vnni", lambda v=vnni: v)
        assert export_mod.openvino_parity_error(net, model) <= export_mod.OV_TOLERANCE
    assert export_mod.openvino_parity_error(net, broken) > export_mod.OV_TOLERANCE  # VNNI: against torch
