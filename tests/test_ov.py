"""The OpenVINO backend: its C API binding, next to vs-mlrt's own libopenvino, errors, and its cache."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

from test_support import noise_clip, onnx_dir, plane, random2  # noqa: F401 (fixtures)
from vs_espcn import backends, graph, models

pytestmark = pytest.mark.skipif(not backends.ov_status()[0], reason=f"OpenVINO unusable: {backends.ov_status()[1]}")


def test_runs_in_vspipe_beside_vs_mlrt_ov(tmp_path, random2):
    """vspipe autoloads vs-mlrt's ov plugin (and its libopenvino) before the script: our backend must
    still run, and so must vs-mlrt's, in the same process."""
    if not hasattr(vs.core, "ov"):
        pytest.skip("vs-mlrt's ov plugin (vapoursynth-mlrt-ov) is not installed")
    script = tmp_path / "both.vpy"
    script.write_text(textwrap.dedent(f"""
        import vapoursynth as vs
        core = vs.core
        clip = core.std.BlankClip(format=vs.YUV420P8, width=32, height=24, length=2, color=[90, 128, 128])
        ours = core.espcn.Upscale(clip, model={str(random2)!r}, backend="ov")
        y = core.std.ShufflePlanes(clip, 0, vs.GRAY).resize.Point(format=vs.GRAYS)
        peer = core.ov.Model(y, network_path={str(random2)!r}, device="CPU")
        ours.get_frame(0), peer.get_frame(0)
        ours.set_output()
    """))
    vspipe = Path(sys.executable).with_name("vspipe")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([str(vspipe), str(script), "-p", "."], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert "Output 2 frames" in res.stderr


def test_broken_model_is_a_clear_error(core, tmp_path):
    """A file that passes the ONNX checks but that OpenVINO cannot compile names the backend and model."""
    from vs_espcn.backends import ov

    info = models.load(models.MODEL_DIR / "espcn_x2.onnx")
    broken = info.path.read_bytes()[:-100]  # truncated weights
    with pytest.raises(vs.Error, match=r"espcn.Upscale: OpenVINO cannot compile model 'espcn_x2.onnx' \("):
        _compile_bytes(ov, info, broken)


def _compile_bytes(ov, info, data):
    """Compile `data` as if it were `info`'s file."""
    from unittest import mock

    with mock.patch.object(ov, "_onnx_for", lambda model, precision: (data, False)):
        return ov._compile(info, (8, 8), ov.OvOptions())


def test_compiled_models_are_shared_and_freed_with_their_graphs(core, random2):
    from vs_espcn.backends import ov

    gc.collect()
    before = len(ov._compiled)
    clip = noise_clip(vs.GRAY8, 24, 16, length=1)
    a = graph.upscale(clip, model=str(random2), backend="ov", precision="fp32", num_streams=3)
    b = graph.upscale(clip, model=str(random2), backend="ov", precision="fp32", num_streams=3)
    assert np.array_equal(plane(a), plane(b))
    assert len(ov._compiled) == before + 1  # one compiled model for both graphs
    del a, b
    gc.collect()
    assert len(ov._compiled) == before


def test_infer_requests_follow_num_streams_not_frames_or_threads(core, random2, monkeypatch):
    """At most `num_streams` requests (and their buffers), however many frames and worker threads: a
    request per frame (what a threading.local gave, VapourSynth's threads getting a fresh Python thread
    state per callback) or per thread would make memory grow with either."""
    from vs_espcn.backends import ov_capi

    made = []
    real = ov_capi.CompiledModel.request
    monkeypatch.setattr(ov_capi.CompiledModel, "request", lambda self, *a: made.append(1) or real(self, *a))
    saved = core.num_threads
    core.num_threads = 8
    try:
        clip = noise_clip(vs.GRAY8, 40, 24, length=24)
        out = graph.upscale(clip, model=str(random2), backend="ov", precision="fp32", num_streams=2)
        futures = [out.get_frame_async(n) for n in range(24)]
        frames = [np.asarray(f.result()[0]).copy() for f in futures]
    finally:
        core.num_threads = saved
    assert 1 <= len(made) <= 2
    ref = graph.upscale(clip, model=str(random2), backend="ov", precision="fp32", num_streams=1)
    assert all(np.array_equal(a, plane(ref, n)) for n, a in enumerate(frames))


def test_an_openvino_without_the_binding_s_functions_is_unusable_not_a_crash(monkeypatch, tmp_path):
    """A libopenvino_c that lacks a function the binding calls (an older OpenVINO) is reported as unusable,
    so `auto` falls back to ONNX Runtime instead of failing every Upscale."""
    from vs_espcn.backends import ov_capi

    fake = tmp_path / "libopenvino_c.so.1"  # a real shared library without OpenVINO's functions: our shim
    fake.write_bytes(Path(vs.core.espcn.plugin_path).read_bytes())
    monkeypatch.setattr(ov_capi, "_candidates", lambda: [fake])
    ov_capi.library.cache_clear()
    try:
        with pytest.raises(OSError, match="OpenVINO too old"):
            ov_capi.library()
    finally:
        monkeypatch.undo()
        ov_capi.library.cache_clear()
        ov_capi.library()


def test_only_the_c_api_beside_a_loaded_libopenvino_is_tried(monkeypatch, tmp_path):
    """With a libopenvino already in the process (vs-mlrt's), the wheel's C API is never a fallback: it
    would pull a second libopenvino in. Without one, the wheel's is used."""
    from vs_espcn.backends import ov_capi

    mlrt, wheel = tmp_path / "mlrt", tmp_path / "wheel"
    for folder in (mlrt, wheel):
        folder.mkdir()
        (folder / "libopenvino_c.so.2641").write_bytes(b"")
    monkeypatch.setattr(ov_capi, "_wheel_libs", lambda: wheel)
    monkeypatch.setattr(ov_capi, "_loaded_libopenvino", lambda: mlrt)
    assert ov_capi._candidates() == [mlrt / "libopenvino_c.so.2641"]
    monkeypatch.setattr(ov_capi, "_loaded_libopenvino", lambda: None)
    assert ov_capi._candidates() == [wheel / "libopenvino_c.so.2641"]
