"""TensorRT on a real NVIDIA GPU (skipped, with the reason, where `nvidia-smi` or TensorRT does not work).

Bound: TensorRT output (fp16 by default) vs the fp32 ONNX Runtime output of the same model, Y-PSNR
>= 50 dB, for every shipped scale (plus factory models for scales not shipped yet) and several
formats; plus engine reuse, rebuild of a truncated engine, multi-stream + CUDA graphs, dynamic
profile, tiling and the benchmark command.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

from tests.onnx_models import make_espcn_onnx
from tests.trt_helpers import gpu_skip_reason, shipped_models
from vs_espcn import graph

pytestmark = pytest.mark.skipif(bool(gpu_skip_reason()), reason=gpu_skip_reason() or "GPU present")
core = vs.core
FORMATS = [vs.YUV420P8, vs.YUV420P10, vs.YUV444P16, vs.GRAY8, vs.GRAYS, vs.YUV420PH]


def models_by_scale(tmp: Path) -> dict[str, Path]:
    """Shipped models, plus a random-weights factory model for each scale none of them covers."""
    out = {p.stem: p for p in shipped_models()}
    for s in (2, 3, 4):
        if f"espcn_x{s}" not in out:
            out[f"factory_x{s}"] = make_espcn_onnx(tmp / f"factory_x{s}.onnx", s, seed=s)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return models_by_scale(tmp_path_factory.mktemp("onnx"))


def photo_clip(fmt: int, width: int = 317, height: int = 239, length: int = 3) -> vs.VideoNode:
    """A real photo (scikit-image astronaut) as `fmt`, shifted per frame; odd sizes on purpose
    where the format allows them."""
    from skimage import data

    rgb = data.astronaut()
    f = core.get_video_format(fmt)
    w = width - width % (1 << f.subsampling_w)
    h = height - height % (1 << f.subsampling_h)
    blank = core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=length)

    def fill(n, f):
        out = f.copy()
        for p in range(3):
            np.asarray(out[p])[...] = rgb[40 + n: 40 + n + h, 100: 100 + w, p] / 255.0
        return out

    src = core.std.ModifyFrame(blank, blank, fill)
    return core.resize.Bicubic(src, format=fmt, matrix_s="709", dither_type="none")


def y_psnr(a: vs.VideoNode, b: vs.VideoNode, n: int = 0) -> float:
    fa, fb = a.get_frame(n), b.get_frame(n)
    peak = 1.0 if a.format.sample_type == vs.FLOAT else (1 << a.format.bits_per_sample) - 1
    x, y = np.asarray(fa[0], np.float64), np.asarray(fb[0], np.float64)
    mse = np.mean((x - y) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak * peak / mse))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: core.get_video_format(f).name)
def test_trt_matches_ort_every_scale(models, fmt, tmp_path):
    clip = photo_clip(fmt)
    for name, path in models.items():
        ort = graph.upscale(clip, model=str(path), backend="ort")
        trt = graph.upscale(clip, model=str(path), backend="trt", cache_dir=str(tmp_path))
        assert (trt.width, trt.height, trt.format.id) == (ort.width, ort.height, ort.format.id)
        for n in range(clip.num_frames):
            assert y_psnr(trt, ort, n) >= 50.0, (name, n)


def test_fp32_engine_is_closer_than_fp16(models, tmp_path):
    clip = photo_clip(vs.GRAYS)
    path = next(iter(models.values()))
    ort = graph.upscale(clip, model=str(path), backend="ort")
    fp32 = graph.upscale(clip, model=str(path), backend="trt", fp16=False, cache_dir=str(tmp_path))
    assert y_psnr(fp32, ort) >= 70.0


def test_engine_is_reused_and_truncated_engine_rebuilt(models, tmp_path, caplog):
    from vs_espcn.backends import trt

    clip = photo_clip(vs.YUV420P8)
    path = next(iter(models.values()))
    kw = dict(model=str(path), backend="trt", cache_dir=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="vs_espcn"):
        first = graph.upscale(clip, **kw)
        assert "building TensorRT engine" in caplog.text
        trt.clear_runners()  # make the next call load from disk, not reuse the in-memory engine
        caplog.clear()
        graph.upscale(clip, **kw)
        assert "building TensorRT engine" not in caplog.text and "TensorRT engine " in caplog.text
        [engine] = list(tmp_path.glob("*.engine"))
        engine.write_bytes(engine.read_bytes()[:1000])
        trt.clear_runners()
        caplog.clear()
        again = graph.upscale(clip, **kw)
        assert "truncated or corrupt" in caplog.text and "building TensorRT engine" in caplog.text
    assert y_psnr(first, again) == float("inf")


def test_streams_and_cuda_graphs_give_identical_frames(models, tmp_path):
    clip = photo_clip(vs.YUV420P8, length=8)
    path = next(iter(models.values()))
    base = graph.upscale(clip, model=str(path), backend="trt", cache_dir=str(tmp_path))
    fast = graph.upscale(clip, model=str(path), backend="trt", cache_dir=str(tmp_path), num_streams=3,
                         cuda_graph=True)
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda n: np.array(fast.get_frame(n)[0]), range(clip.num_frames)))
    for n, plane in enumerate(got):
        np.testing.assert_array_equal(plane, np.asarray(base.get_frame(n)[0]))


def test_upscale_per_frame_reuses_one_engine(models, tmp_path):
    """Upscale inside FrameEval: every call after the first reuses the loaded engine and buffers."""
    from vs_espcn.backends import trt

    trt.clear_runners()
    clip = photo_clip(vs.YUV420P8, length=4)
    path = next(iter(models.values()))
    kw = dict(model=str(path), backend="trt", cache_dir=str(tmp_path))
    whole = graph.upscale(clip, **kw)
    per_frame = core.std.FrameEval(whole, lambda n: graph.upscale(clip[n], **kw)[0] * clip.num_frames)
    for n in range(clip.num_frames):
        np.testing.assert_array_equal(np.asarray(per_frame.get_frame(n)[0]), np.asarray(whole.get_frame(n)[0]))
    assert len(trt._runners) == 1


def test_dynamic_profile_and_tiles_match_ort(models, tmp_path):
    clip = photo_clip(vs.GRAYS)
    path = next(iter(models.values()))
    ort = graph.upscale(clip, model=str(path), backend="ort")
    for kw in ({"static_shape": False}, {"tilesize": [96, 64]}, {"tilesize": [96, 64], "static_shape": False}):
        trt = graph.upscale(clip, model=str(path), backend="trt", cache_dir=str(tmp_path), **kw)
        assert y_psnr(trt, ort) >= 50.0, kw


def test_auto_picks_trt(models, tmp_path):
    clip = photo_clip(vs.YUV420P8)
    path = next(iter(models.values()))
    auto = graph.upscale(clip, model=str(path), backend="auto", cache_dir=str(tmp_path))
    trt = graph.upscale(clip, model=str(path), backend="trt", cache_dir=str(tmp_path))
    assert y_psnr(auto, trt) == float("inf")


def test_benchmark_command_prints_fps(models, capsys, monkeypatch, tmp_path):
    from vs_espcn import bench_gpu

    monkeypatch.setenv("VS_ESPCN_CACHE_DIR", str(tmp_path))

    path = models.get("espcn_x2") or models["factory_x2"]
    assert bench_gpu.main(["--model", str(path), "--frames", "10", "--only", "trt"]) == 0
    out = capsys.readouterr().out
    assert "1920x1080 -> 3840x2160" in out
    lines = [ln for ln in out.splitlines() if ln.startswith("trt")]
    assert len(lines) == 3 and all(ln.rstrip().endswith("fps") for ln in lines), out
