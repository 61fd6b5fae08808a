"""Real TensorRT(-RTX) builds up to the serialized engine, through the cache and the CLI (no GPU needed).

Here CI has `tensorrt-rtx`, whose builder works without a GPU; everything skips with the reason
when no TensorRT builder can start. Shapes are small to keep builds short on 2 cores.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
from onnx import TensorProto, helper

from tests.onnx_models import make_espcn_onnx
from tests.trt_helpers import require_builder, shipped_models
from vs_espcn.backends import TrtOptions
from vs_espcn.backends.trt import ensure_engine, make_key
from vs_espcn.backends.trt_build import BuildError, BuildSpec, build_serialized, precision_mode, profile_for
from vs_espcn.engine_cache import EngineCache

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (24, 40)


def _model(path: Path):
    from vs_espcn import models

    return models.load(path)


MODELS = ["factory_x3"] + [p.name for p in shipped_models()]


def _onnx_file(tmp_path, name: str) -> Path:
    """The factory model (always) or a shipped model (when present in this checkout)."""
    if name == "factory_x3":
        return make_espcn_onnx(tmp_path / "factory_x3.onnx", 3, seed=3)
    return next(p for p in shipped_models() if p.name == name)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("static", [True, False], ids=["static", "dynamic"])
@pytest.mark.parametrize("fp16", [True, False], ids=["fp16", "fp32"])
def test_build_serialized_engine(tmp_path, name, static, fp16):
    trt = require_builder()
    path = _onnx_file(tmp_path, name)
    spec = BuildSpec(profile=profile_for(SHAPE, static), fp16=fp16, opt_level=1,
                     timing_cache=tmp_path / "timing.cache")
    data = build_serialized(trt, path.read_bytes(), spec)
    assert isinstance(data, bytes) and len(data) > 10_000, path


def test_timing_cache_is_saved_and_reused(tmp_path):
    """The TensorRT (non-RTX) timing-cache path, driven through the real builder API under the
    name `tensorrt` (in TensorRT-RTX the calls exist but are no-ops)."""
    import warnings

    trt = require_builder()
    proxy = SimpleNamespace(**{k: getattr(trt, k) for k in dir(trt) if not k.startswith("__")})
    proxy.__name__ = "tensorrt"
    cache = tmp_path / "timing.cache"
    spec = BuildSpec(profile=profile_for(SHAPE, True), fp16=False, opt_level=1, timing_cache=cache)
    model = make_espcn_onnx(tmp_path / "m.onnx", 2).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        build_serialized(proxy, model, spec)
        assert cache.is_file() and cache.stat().st_size > 0
        cache.write_bytes(b"garbage")  # unreadable cache: ignored (or rejected), never fatal
        assert len(build_serialized(proxy, model, spec)) > 10_000


def test_precision_mode_follows_the_builder_flags():
    trt = require_builder()
    with_flag = SimpleNamespace(BuilderFlag=SimpleNamespace(FP16=1))
    without = SimpleNamespace(BuilderFlag=SimpleNamespace())
    assert precision_mode(with_flag, True) == "flag"  # TensorRT 10
    assert precision_mode(without, True) == "onnx"  # TensorRT 11 / RTX
    assert precision_mode(with_flag, False) == "none"
    expected = "flag" if hasattr(trt.BuilderFlag, "FP16") else "onnx"
    assert precision_mode(trt, True) == expected


def test_fp16_and_fp32_engines_differ(tmp_path):
    trt = require_builder()
    path = make_espcn_onnx(tmp_path / "m.onnx", 2)
    a = build_serialized(trt, path.read_bytes(), BuildSpec(profile=profile_for(SHAPE, True), fp16=True, opt_level=1))
    b = build_serialized(trt, path.read_bytes(), BuildSpec(profile=profile_for(SHAPE, True), fp16=False, opt_level=1))
    assert a != b


def test_unsupported_op_is_a_clear_build_error(tmp_path):
    trt = require_builder()
    node = helper.make_node("FancyUpscale", ["lr"], ["hr"], domain="example.custom")
    graph = helper.make_graph([node], "bad", [helper.make_tensor_value_info("lr", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("hr", TensorProto.FLOAT, [1, 1, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("example.custom", 1)])
    with pytest.raises(BuildError, match="could not parse the ONNX"):
        build_serialized(trt, model.SerializeToString(), BuildSpec(profile=profile_for((4, 4), True)))


def test_key_records_what_changes_the_engine(tmp_path):
    trt = require_builder()
    info = _model(make_espcn_onnx(tmp_path / "m.onnx", 2))
    gpu = SimpleNamespace(name="NVIDIA GeForce RTX 4070", cc_label="8.9")
    key = make_key(info, (360, 640), TrtOptions(), trt, gpu)
    assert key.onnx_sha256 == info.sha256 and key.scale == 2
    assert key.profile == ((1, 1, 360, 640),) * 3 and key.precision == "fp16"
    assert key.trt_package == trt.__name__ and key.trt_version == trt.__version__
    assert (key.gpu_name, key.compute_capability) == ("NVIDIA GeForce RTX 4070", "8.9")
    dyn = make_key(info, (360, 640), TrtOptions(static_shape=False, fp16=False, opt_level=5, workspace=64), trt, None)
    assert dyn.profile == ((1, 1, 1, 1), (1, 1, 360, 640), (1, 1, 360, 640))
    assert (dyn.precision, dyn.opt_level, dyn.workspace_mib, dyn.gpu_name) == ("fp32", 5, 64, "none")


def test_ensure_engine_caches_and_rebuilds_truncated(tmp_path, caplog):
    trt = require_builder()
    info = _model(make_espcn_onnx(tmp_path / "m.onnx", 2))
    opts = TrtOptions(opt_level=1, cache_dir=str(tmp_path / "cache"))
    cache, key, path, data, built = ensure_engine(info, SHAPE, opts, trt, None)
    assert built and path.read_bytes() == data and path.parent == tmp_path / "cache"
    assert json.loads(cache.sidecar_path(key).read_text())["key"] == key.to_dict()
    assert ensure_engine(info, SHAPE, opts, trt, None)[4] is False
    path.write_bytes(data[: len(data) // 3])
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        _, _, path2, data2, built2 = ensure_engine(info, SHAPE, opts, trt, None)
    assert built2 and path2 == path and len(data2) > len(data) // 3
    assert "truncated or corrupt" in caplog.text and "building TensorRT engine for 1x1x24x40 fp16" in caplog.text
    assert EngineCache(tmp_path / "cache").load(key) == data2


def _cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "vs_espcn", "engines", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_cli_two_processes_build_one_engine_then_list_and_clear(tmp_path):
    require_builder()
    model = make_espcn_onnx(tmp_path / "m.onnx", 2)
    env = dict(os.environ, VS_ESPCN_CACHE_DIR=str(tmp_path / "cache"))
    args = ["build", "--model", str(model), "--width", "40", "--height", "24", "--opt-level", "1"]
    procs = [_cli(args, env) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1 and Path(paths.pop()).is_file()
    assert sum(err.count("building TensorRT engine for 1x1x32x48 fp16") for _, err in outs) == 1
    assert all("this can take minutes" not in out for out, _ in outs)  # progress never on stdout
    entries = EngineCache(tmp_path / "cache").entries()
    assert len(entries) == 1 and EngineCache(tmp_path / "cache").check(_entry_key(entries[0]))[0] is not None

    listed = _cli(["list"], env).communicate(timeout=120)[0]
    assert str(entries[0]["path"]) in listed
    cleared = _cli(["clear"], env).communicate(timeout=120)
    assert "deleted 1 engine" in cleared[1] and not any((tmp_path / "cache").glob("*.engine"))


def _entry_key(entry):
    from vs_espcn.engine_cache import EngineKey

    k = dict(entry["key"])
    k["profile"] = tuple(tuple(s) for s in k["profile"])
    return EngineKey(**k)


def test_cli_dynamic_fp32_and_bad_model(tmp_path):
    require_builder()
    env = dict(os.environ, VS_ESPCN_CACHE_DIR=str(tmp_path / "cache"))
    model = make_espcn_onnx(tmp_path / "m.onnx", 4)
    out, err = _cli(["build", "--model", str(model), "--width", "30", "--height", "20", "--fp32", "--dynamic",
                     "--opt-level", "0"], env).communicate(timeout=600)
    assert "-dyn-fp32-" in out and "building TensorRT engine for 1x1x1x1-1x1x28x38 fp32" in err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    proc = _cli(["build", "--model", str(bad), "--width", "30", "--height", "20"], env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and out == "" and "espcn.Upscale" in err and "not a valid ONNX" in err


def test_cli_tile_window_is_the_plugin_tile():
    """A clip that fits the pixel budget is one whole-plane tile (with its mirrored border of the
    receptive radius per side); a tiled one is at most tilesize + 2 * overlap per axis (the shape the
    static engine is built for)."""
    from vs_espcn.engines_cli import tile_window

    assert tile_window(360, 640, 4, [], -1) == (368, 648)
    h, w = tile_window(1080, 1920, 4, [512, 256], 8)
    assert 16 < h <= 256 + 16 and 16 < w <= 512 + 16
