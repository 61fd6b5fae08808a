"""The `precision` argument: CPU flags, fallback order, errors, the centred rewrite, and the quality budget
of every reduced precision against fp32 through the plugin on Set5 and Set14."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

from vs_espcn import backends, centered, graph, models, precision

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
HAS_OV = backends.ov_status()[0]
needs_ov = pytest.mark.skipif(not HAS_OV, reason=f"OpenVINO unusable: {backends.ov_status()[1]}")
needs_bf16 = pytest.mark.skipif(not (HAS_OV and precision.cpu_can("bf16")),
                                reason="needs OpenVINO and a CPU with AVX512_BF16 or AMX")


@pytest.fixture
def flags(monkeypatch):
    """Pretend the CPU has exactly the given flags."""
    def set_flags(*names: str) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(names))
    return set_flags


def test_auto_resolves_per_backend_and_cpu(flags):
    flags("avx2", "avx512f", "avx512_bf16")
    assert precision.resolve("ov", "auto") == "bf16"
    assert precision.resolve("ort", "auto") == "fp32"
    assert precision.resolve("trt", "auto") == "fp16" and precision.resolve("trt", "auto", fp16=False) == "fp32"
    flags("avx2", "avx512f")
    assert precision.resolve("ov", "auto") == "fp32"


def test_explicit_precision_the_hardware_lacks_is_an_error(flags):
    flags("avx2")
    with pytest.raises(vs.Error, match=r'espcn.Upscale: precision="bf16" is unavailable: this CPU has no bf16'):
        precision.resolve("ov", "bf16")
    with pytest.raises(vs.Error, match=r"backend 'ort' runs fp32 only"):
        precision.resolve("ort", "bf16")
    with pytest.raises(vs.Error, match=r"this CPU has no VNNI int8 instructions \(needs one of avx512_vnni"
                                       r".*no faster than ONNX Runtime fp32"):
        precision.resolve("ov", "int8")
    with pytest.raises(vs.Error, match=r"backend 'ort' runs fp32 only"):
        precision.resolve("ort", "int8")
    with pytest.raises(vs.Error, match=r"backend 'trt' runs fp16 and fp32 only"):
        precision.resolve("trt", "bf16")
    with pytest.raises(vs.Error, match=r'unknown precision .*"auto", "fp32", "bf16", "fp16", "int8"'):
        precision.check("fp8")


def test_upscale_names_bad_precision(core, onnx_x2, flags):
    clip = core.std.BlankClip(format=vs.GRAY8, width=16, height=16, length=1)
    with pytest.raises(vs.Error, match="espcn.Upscale: unknown precision 'half'"):
        core.espcn.Upscale(clip, model=str(onnx_x2), precision="half")
    flags("avx2")
    with pytest.raises(vs.Error, match=r'espcn.Upscale: precision="bf16" is unavailable'):
        core.espcn.Upscale(clip, model=str(onnx_x2), backend="ort", precision="bf16")


def test_auto_backend_order_and_fallback_logged_once(monkeypatch, caplog, onnx_x2, flags):
    info = models.load(onnx_x2)
    flags("avx512_bf16")
    monkeypatch.setattr(backends, "_warned", set())
    monkeypatch.setattr(backends, "trt_status", lambda device_id=0: (False, "no libnvinfer"))
    monkeypatch.setattr(backends, "gpu_present", lambda: True)
    made = []
    monkeypatch.setattr(backends, "_create_ov", lambda m, s, o: made.append(("ov", o.precision)) or "ov-net")
    monkeypatch.setattr(backends, "_create_ort", lambda m, s, o: made.append(("ort", "fp32")) or "ort-net")
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        assert backends.create("auto", info, (8, 8)) == "ov-net"
        assert backends.create("auto", info, (8, 8)) == "ov-net"
    assert made == [("ov", "bf16"), ("ov", "bf16")]
    assert [r.getMessage() for r in caplog.records] == [
        "espcn.Upscale: TensorRT unusable (no libnvinfer); using OpenVINO"]
    caplog.clear()
    monkeypatch.setattr(backends, "ov_status", lambda: (False, "openvino is not installed"))
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        assert backends.create("auto", info, (8, 8)) == "ort-net"
    assert "OpenVINO unusable (openvino is not installed); using ONNX Runtime" in caplog.text
    # an explicit bf16 skips the backends that cannot run it; none left is an error naming each reason
    assert backends.create("auto", info, (8, 8), backends.BackendOptions(precision="fp32")) == "ort-net"
    with pytest.raises(vs.Error, match=r'no backend can run precision="bf16" here .*ONNX Runtime: backend'):
        backends.create("auto", info, (8, 8), backends.BackendOptions(precision="bf16"))
    with pytest.raises(vs.Error, match=r'backend="ov" is unavailable: openvino is not installed'):
        backends.create("ov", info, (8, 8))


def test_auto_takes_ort_where_the_cpu_runs_fp32_anyway(monkeypatch, caplog, onnx_x2, flags):
    """Without bf16 instructions auto runs ONNX Runtime fp32 (faster than OpenVINO fp32), OpenVINO only as
    its fallback; explicit reduced precisions still go to OpenVINO."""
    info = models.load(onnx_x2)
    monkeypatch.setattr(backends, "_warned", set())
    monkeypatch.setattr(backends, "trt_status", lambda device_id=0: (False, "no NVIDIA GPU"))
    monkeypatch.setattr(backends, "gpu_present", lambda: False)
    monkeypatch.setattr(backends, "ov_status", lambda: (True, ""))
    monkeypatch.setattr(backends, "_create_ov", lambda m, s, o: f"ov-{o.precision}")
    monkeypatch.setattr(backends, "_create_ort", lambda m, s, o: "ort-net")
    flags("avx2", "fma")
    assert backends.auto_order("auto") == ("trt", "ort", "ov")
    assert backends.create("auto", info, (8, 8)) == "ort-net"
    assert backends.create("auto", info, (8, 8), backends.BackendOptions(precision="fp32")) == "ort-net"
    assert backends.create("ov", info, (8, 8)) == "ov-fp32"  # an explicit backend is never overruled
    flags("avx2", "avx512_vnni")
    assert backends.create("auto", info, (8, 8), backends.BackendOptions(precision="int8")) == "ov-int8"
    flags("avx2", "avx512_bf16")
    assert backends.create("auto", info, (8, 8)) == "ov-bf16"
    # an explicit fp32 runs ONNX Runtime everywhere (at parity with OpenVINO fp32 on Zen 5, 1.4x on Zen 3)
    assert backends.create("auto", info, (8, 8), backends.BackendOptions(precision="fp32")) == "ort-net"
    flags("avx2")
    monkeypatch.setattr(backends, "_create_ort", lambda *a: (_ for _ in ()).throw(RuntimeError("no ort")))
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        assert backends.create("auto", info, (8, 8)) == "ov-fp32"
    assert "ONNX Runtime unusable (RuntimeError: no ort); using OpenVINO" in caplog.text


def test_ort_threads_are_shared_by_the_frames_in_flight(monkeypatch):
    """The frames in flight share one session: its pool plus one thread per running frame make `threads`."""
    monkeypatch.setattr(backends, "physical_cores", lambda: 8)
    assert backends.OrtOptions().intra_threads() == 0  # one frame: ORT's own default (physical cores, pinned)
    assert backends.OrtOptions(streams=2).intra_threads() == 7  # 6 pool threads + 2 callers = 8
    assert backends.OrtOptions(threads=2, streams=2).intra_threads() == 1
    assert backends.OrtOptions(threads=1, streams=4).intra_threads() == 1  # at least one thread per frame
    assert backends.OrtOptions(threads=6, streams=1).intra_threads() == 6


def test_physical_cores_counts_hyperthread_siblings_once(monkeypatch, tmp_path):
    siblings = {0: "0,4", 4: "0,4", 1: "1,5", 5: "1,5", 2: "2"}
    monkeypatch.setattr(backends.os, "sched_getaffinity", lambda pid: set(siblings))
    real_path = backends.Path

    def fake(path: str):
        cpu = int(path.split("/cpu/cpu")[1].split("/")[0])
        f = tmp_path / f"cpu{cpu}"
        f.write_text(siblings[cpu] + "\n")
        return real_path(f)

    monkeypatch.setattr(backends, "Path", fake)
    assert backends.physical_cores() == 3
    monkeypatch.setattr(backends, "Path", lambda p: real_path(tmp_path / "missing"))
    assert backends.physical_cores() == 5  # no topology files: every CPU counts


def test_missing_onnxruntime_is_said_in_one_sentence(monkeypatch, onnx_x2, flags):
    import importlib.util

    flags("avx2")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    monkeypatch.setattr(backends, "ov_status", lambda: (False, "openvino is not installed"))
    monkeypatch.setattr(backends, "trt_status", lambda device_id=0: (False, "no NVIDIA GPU"))
    with pytest.raises(vs.Error, match=r'backend="ort" is unavailable: onnxruntime is not installed \(pip install'):
        backends.create("ort", models.load(onnx_x2), (8, 8))
    with pytest.raises(vs.Error, match=r"ONNX Runtime: onnxruntime is not installed"):
        backends.create("auto", models.load(onnx_x2), (8, 8))


def test_no_gpu_means_no_trt_warning(monkeypatch, caplog, onnx_x2, flags):
    flags("avx512_bf16")
    monkeypatch.setattr(backends, "_warned", set())
    monkeypatch.setattr(backends, "trt_status", lambda device_id=0: (False, "no NVIDIA GPU"))
    monkeypatch.setattr(backends, "gpu_present", lambda: False)
    monkeypatch.setattr(backends, "_create_ov", lambda m, s, o: "ov-net")
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        assert backends.create("auto", models.load(onnx_x2), (8, 8)) == "ov-net"
    assert not caplog.records


@pytest.mark.parametrize("name", ["espcn_x2.onnx", "espcn_x3.onnx", "espcn_x4.onnx", "espcn_x2_anime.onnx",
                                  "espcn_x2_manga.onnx"])
def test_centred_rewrite_is_exact_in_fp32(name):
    """The centred network on x - 0.5, plus 0.5, equals the network on x for every pixel at least the
    receptive radius from the edge (only the zero padding changes meaning)."""
    ort = pytest.importorskip("onnxruntime")
    data = (models.MODEL_DIR / name).read_bytes()
    info = models.load(models.MODEL_DIR / name)
    x = np.random.default_rng(0).random((1, 1, 23, 31), dtype=np.float32)
    plain = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
    shifted = ort.InferenceSession(centered.centre(data), providers=["CPUExecutionProvider"]).run(
        None, {"lr": x - np.float32(0.5)})[0] + np.float32(0.5)
    k = info.radius * info.scale
    inner = np.abs(plain - shifted)[..., k:-k, k:-k]
    assert inner.max() < 2e-6
    assert np.abs(plain - shifted).max() > 1e-3  # the border does differ: the test sees the padding


def test_centre_refuses_graphs_it_does_not_understand(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, TensorProto

    g = helper.make_graph([helper.make_node("Identity", ["lr"], ["hr"])], "id",
                          [helper.make_tensor_value_info("lr", TensorProto.FLOAT, [1, 1, None, None])],
                          [helper.make_tensor_value_info("hr", TensorProto.FLOAT, [1, 1, None, None])])
    assert centered.centre(helper.make_model(g).SerializeToString()) is None


def _psnr_through_plugin(core, pairs, scale: int, model: str, **kwargs) -> float:
    """Mean Y-PSNR of Upscale on 8-bit LR Y planes (the protocol of trainer.eval)."""
    from trainer.metrics import psnr

    scores = []
    for p in pairs:
        lr = np.rint(p.lr_y * 255).astype(np.uint8)
        clip = core.std.BlankClip(format=vs.GRAY8, width=lr.shape[1], height=lr.shape[0], length=1)
        frame = clip.get_frame(0).copy()
        np.asarray(frame[0])[:] = lr
        clip = clip.std.ModifyFrame(clip, lambda n, f, fr=frame: fr)
        out = graph.upscale(clip, scale, model=model, **kwargs)
        sr = np.asarray(out.get_frame(0)[0]).astype(np.float64) / 255
        scores.append(psnr(sr, p.hr_y, scale))
    return float(np.mean(scores))


def _eval_sets(model: str, scale: int) -> dict[str, list]:
    """Where each shipped model is judged: the photo models on Set5 and Set14, the line-art model on its
    own seeded hold-out, the manga model on the manga hold-out (the sets its card reports first)."""
    from trainer.data import load_pairs

    if model in ("anime", "manga"):
        from trainer.holdouts import holdout

        with contextlib.chdir(REPO):  # the hold-outs name ../shared relative to the repository
            name = "lineart" if model == "anime" else "manga"
            return {f"{name} hold-out": load_pairs("", scale, holdout(name))}
    return {name: load_pairs(SHARED / "eval" / name, scale) for name in ("Set5", "Set14")}


@needs_bf16
@pytest.mark.skipif(not SHARED.is_dir(), reason=f"evaluation images not found at {SHARED}")
@pytest.mark.parametrize("model,scale", [("natural", 2), ("natural", 3), ("natural", 4), ("anime", 2), ("manga", 2)])
def test_bf16_keeps_the_quality_budget(core, model, scale):
    """OpenVINO bf16 (the CPU default where it exists) within BUDGET_DB of ONNX Runtime fp32, through the
    plugin (measured: x2 -0.020 / -0.008 dB on Set5 / Set14, line art -0.020, manga -0.006)."""
    for name, pairs in _eval_sets(model, scale).items():
        fp32 = _psnr_through_plugin(core, pairs, scale, model, backend="ort")
        bf16 = _psnr_through_plugin(core, pairs, scale, model, backend="ov", precision="bf16")
        assert fp32 - bf16 <= precision.BUDGET_DB, (name, fp32, bf16)
        assert abs(fp32 - bf16) > 1e-4  # it really ran another precision


@needs_ov
def test_ov_fp32_matches_ort(core, onnx_x2):
    from test_support import noise_clip, plane

    clip = noise_clip(vs.GRAYS, 57, 33, length=2)
    a = plane(graph.upscale(clip, model=str(onnx_x2), backend="ort", clamp=False))
    b = plane(graph.upscale(clip, model=str(onnx_x2), backend="ov", precision="fp32", clamp=False))
    assert np.abs(a - b).max() < 1e-4
