"""The native shim: autoloading in python and vspipe, the Python hand-over, threads, error paths.

Mechanism tests patch `vs_espcn._entry._target` (the seam that picks `graph.upscale`) so they pin
down the shim alone; product tests run the real filter in fresh processes on the installed package.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import textwrap
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

REPO = Path(__file__).resolve().parents[1]

import vs_espcn._entry as entry

UPSCALE_SIGNATURE = (
    "clip:vnode;scale:int:opt;model:data:opt;backend:data:opt;threads:int:opt;tilesize:int[]:opt;"
    "overlap:int:opt;kernel:data:opt;fp16:int:opt;device_id:int:opt;num_streams:int:opt;"
    "cuda_graph:int:opt;static_shape:int:opt;opt_level:int:opt;workspace:int:opt;cache_dir:data:opt;"
    "clamp:int:opt;precision:data:opt;")


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's process: no PYTHONPATH to the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VAPOURSYNTH_EXTRA_PLUGIN_PATH")}
    env.update(extra)
    return env


def _run_python(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a script in a fresh interpreter (cwd outside the repo, so the installed package is used)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=_clean_env(**env),
                          capture_output=True, text=True, timeout=300)


def _point_x2(clip: vs.VideoNode, **_: object) -> vs.VideoNode:
    """Stand-in for graph.upscale in mechanism tests."""
    return clip.resize.Point(clip.width * 2, clip.height * 2)


# ---- registration and hand-over (patched handler) ------------------------------------------------

def test_namespace_and_signature(core):
    assert core.espcn.Upscale.signature == UPSCALE_SIGNATURE
    assert core.espcn.Upscale.return_signature == "clip:vnode;"
    assert core.espcn.identifier == "com.vs-espcn.espcn"
    assert Path(core.espcn.plugin_path).parent == Path(vs.get_plugin_dir()) / "vs_espcn"


def test_handler_gets_converted_args_and_its_clip_is_returned(core, monkeypatch):
    seen: dict = {}

    def target(clip, **kwargs):
        seen.update(kwargs)
        return clip.std.SetFrameProp("marker", intval=7)

    monkeypatch.setattr(entry, "_target", lambda: target)
    clip = core.std.BlankClip(format=vs.YUV420P8, width=64, height=48, length=3)
    out = core.espcn.Upscale(clip, 3, model="x.onnx", backend="ort", tilesize=[32], kernel="lanczos",
                             fp16=0, cuda_graph=1, cache_dir="/tmp/c", workspace=64, clamp=0)
    assert seen == {"scale": 3, "model": "x.onnx", "backend": "ort", "tilesize": (32,), "kernel": "lanczos",
                    "fp16": False, "cuda_graph": True, "cache_dir": "/tmp/c", "workspace": 64, "clamp": False}
    assert out.get_frame(0).props["marker"] == 7
    # method call form, two-value tilesize, only given args are passed
    seen.clear()
    clip.espcn.Upscale(tilesize=[16, 8])
    assert seen == {"tilesize": (16, 8)}


def test_python_exception_text_becomes_vs_error(core, monkeypatch):
    def target(**_):
        raise ValueError("boom 42")

    monkeypatch.setattr(entry, "_target", lambda: target)
    with pytest.raises(vs.Error) as err:
        core.espcn.Upscale(core.std.BlankClip(format=vs.GRAY8))
    assert str(err.value) == "espcn.Upscale: ValueError: boom 42"


def test_vs_error_message_kept_verbatim(core, monkeypatch):
    def target(**_):
        raise vs.Error("espcn.Upscale: scale=5 is invalid; use 2, 3 or 4")

    monkeypatch.setattr(entry, "_target", lambda: target)
    with pytest.raises(vs.Error) as err:
        core.espcn.Upscale(core.std.BlankClip(format=vs.GRAY8), 5)
    assert str(err.value) == "espcn.Upscale: scale=5 is invalid; use 2, 3 or 4"


def test_handler_returning_no_clip_is_an_error(core, monkeypatch):
    monkeypatch.setattr(entry, "_target", lambda: (lambda **_: 42))
    with pytest.raises(vs.Error, match=r"^espcn\.Upscale: internal error: the Python handler returned no clip"):
        core.espcn.Upscale(core.std.BlankClip(format=vs.GRAY8))


def test_register_handler_alone_is_refused(core):
    with pytest.raises(vs.Error, match="internal to vs_espcn"):
        core.espcn.RegisterHandler(func=_point_x2)


def test_upscale_from_many_threads(core, monkeypatch):
    monkeypatch.setattr(entry, "_target", lambda: _point_x2)
    clip = core.std.BlankClip(format=vs.GRAY8, width=20, height=10)
    widths: list[int] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                src = clip.std.AddBorders(left=2 * (n + i % 3))
                widths.append(core.espcn.Upscale(src).width - 2 * src.width)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert widths == [0] * 100


def test_upscale_inside_frameeval_on_worker_threads(core, monkeypatch):
    monkeypatch.setattr(entry, "_target", lambda: _point_x2)
    base = core.std.BlankClip(format=vs.GRAY8, width=16, height=8, length=24)
    src = core.std.FrameEval(base, lambda n: base.std.BlankClip(color=[n * 10]))

    def per_frame(n: int) -> vs.VideoNode:
        return core.espcn.Upscale(src[n])

    out = core.std.FrameEval(src.resize.Point(32, 16), per_frame)
    frames = list(out.frames())  # requested from VapourSynth's worker threads
    assert [int(np.asarray(f[0])[0, 0]) for f in frames] == [n * 10 for n in range(24)]


def test_clip_of_another_core_is_refused(tmp_path, onnx_x2):
    """Two environments (cores) in one process: each works; a clip from the other core errors cleanly."""
    script = f"""
        import threading, vapoursynth as vs

        class Policy(vs.EnvironmentPolicy):
            def __init__(self): self.local = threading.local()
            def on_policy_registered(self, api): self.api = api
            def get_current_environment(self): return getattr(self.local, "env", None)
            def set_environment(self, env):
                old = getattr(self.local, "env", None); self.local.env = env; return old
            def is_alive(self, env): return True

        policy = Policy(); vs.register_policy(policy)
        envs = [policy.api.create_environment() for _ in range(2)]
        a, b = (policy.api.wrap_environment(e) for e in envs)
        with a.use():
            clip_a = vs.core.std.BlankClip(format=vs.GRAY8, width=32, height=24)
            width_a = vs.core.espcn.Upscale(clip_a, model={str(onnx_x2)!r}).get_frame(0).width
        with b.use():
            clip_b = vs.core.std.BlankClip(format=vs.GRAY8, width=40, height=24)
            width_b = vs.core.espcn.Upscale(clip_b, model={str(onnx_x2)!r}).get_frame(0).width
            try:
                clip_a.espcn.Upscale(model={str(onnx_x2)!r})
                crossed = "no error"
            except vs.Error as exc:
                crossed = str(exc)
        print(width_a, width_b, crossed)
        for e in envs:
            policy.api.destroy_environment(e)
    """
    res = _run_python(script, tmp_path)
    assert res.returncode == 0, res.stderr
    width_a, width_b, crossed = res.stdout.strip().split(" ", 2)
    assert (width_a, width_b) == ("64", "80")
    assert crossed.startswith("espcn.Upscale: the clip belongs to a different core")


# ---- product: real filter, fresh processes, installed package ------------------------------------

def test_autoloaded_in_plain_python_without_importing_vs_espcn(tmp_path, onnx_x2):
    script = f"""
        import json, sys
        import vapoursynth as vs
        core = vs.core
        clip = core.std.BlankClip(format=vs.YUV420P8, width=66, height=46, length=2, color=[90, 100, 150])
        out = core.espcn.Upscale(clip, model={str(onnx_x2)!r})
        frame = out.get_frame(1)
        print(json.dumps({{"size": [out.width, out.height, frame.width, frame.height],
                          "format": out.format.name, "frames": out.num_frames,
                          "package": sys.modules["vs_espcn"].__file__}}))
    """
    res = _run_python(script, tmp_path)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["size"] == [132, 92, 132, 92]
    assert (info["format"], info["frames"]) == ("YUV420P8", 2)
    assert "site-packages" in info["package"]  # the shim imported the installed package itself


def _vspipe() -> Path:
    return Path(sys.executable).with_name("vspipe")


def test_vspipe_y4m_stdout_is_only_video(tmp_path, onnx_x2):
    script = tmp_path / "upscale.vpy"
    script.write_text(textwrap.dedent(f"""
        import vapoursynth as vs
        core = vs.core
        clip = core.std.BlankClip(format=vs.YUV420P8, width=48, height=32, length=4, color=[80, 120, 140])
        clip.espcn.Upscale(2, model={str(onnx_x2)!r}).set_output()
    """))
    res = subprocess.run([str(_vspipe()), "-c", "y4m", str(script), "-"], cwd=tmp_path, env=_clean_env(),
                         capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    header, _, body = res.stdout.partition(b"\n")
    fields = header.split(b" ")
    assert fields[0] == b"YUV4MPEG2" and b"W96" in fields and b"H64" in fields and b"C420" in header
    frame = b"FRAME\n" + bytes(96 * 64 * 3 // 2)
    frame_len = len(frame)
    assert len(body) == 4 * frame_len  # nothing but four frames of video after the header
    assert all(body[i * frame_len:i * frame_len + 6] == b"FRAME\n" for i in range(4))


def test_vspipe_error_is_reported_not_crashed(tmp_path, onnx_x2):
    script = tmp_path / "rgb.vpy"
    script.write_text(textwrap.dedent(f"""
        import vapoursynth as vs
        vs.core.std.BlankClip(format=vs.RGB24).espcn.Upscale(2, model={str(onnx_x2)!r}).set_output()
    """))
    res = subprocess.run([str(_vspipe()), "-c", "y4m", str(script), "-"], cwd=tmp_path, env=_clean_env(),
                         capture_output=True, timeout=300)
    assert res.returncode == 1 and res.stdout == b""
    assert b"espcn.Upscale" in res.stderr and b"RGB" in res.stderr


def test_rgb_and_missing_model_are_vs_errors(core, onnx_x2, tmp_path):
    with pytest.raises(vs.Error, match=r"espcn\.Upscale.*RGB"):
        core.espcn.Upscale(core.std.BlankClip(format=vs.RGB24), model=str(onnx_x2))
    with pytest.raises(vs.Error, match=r"espcn\.Upscale"):
        core.espcn.Upscale(core.std.BlankClip(format=vs.GRAY8), model=str(tmp_path / "absent.onnx"))


def test_nearest_model_equals_point_through_frameeval(core, onnx_nearest_x2):
    base = core.std.BlankClip(format=vs.GRAY8, width=18, height=16, length=6)
    src = core.std.FrameEval(base.std.AddBorders(4, 2),
                             lambda n: base.std.BlankClip(color=[40 + 20 * n]).std.AddBorders(4, 2, color=[200]))
    out = core.std.FrameEval(src.resize.Point(48, 32),
                             lambda n: core.espcn.Upscale(src[n], model=str(onnx_nearest_x2)))
    ref = src.resize.Point(48, 32)
    for got, want in zip(out.frames(), ref.frames()):
        np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))


# ---- no Python, broken package ------------------------------------------------------------------

HOST_C = r"""
#include <stdio.h>
#include "VapourSynth4.h"
/* A VapourSynth host without Python: espcn.Upscale must return an error, not crash. */
int main(void) {
    const VSAPI *vsapi = getVapourSynthAPI(VAPOURSYNTH_API_VERSION);
    VSCore *core = vsapi->createCore(0);
    VSPlugin *espcn = vsapi->getPluginByNamespace("espcn", core);
    VSPlugin *std = vsapi->getPluginByNamespace("std", core);
    if (!espcn) { printf("no espcn plugin\n"); return 3; }
    VSMap *args = vsapi->createMap();
    vsapi->mapSetInt(args, "format", pfGray8, maReplace);
    VSMap *res = vsapi->invoke(std, "BlankClip", args);
    VSNode *clip = vsapi->mapGetNode(res, "clip", 0, NULL);
    vsapi->freeMap(res);
    vsapi->clearMap(args);
    vsapi->mapConsumeNode(args, "clip", clip, maReplace);
    res = vsapi->invoke(espcn, "Upscale", args);
    const char *err = vsapi->mapGetError(res);
    printf("%s\n", err ? err : "no error");
    vsapi->freeMap(res);
    vsapi->freeMap(args);
    vsapi->freeCore(core);
    return 0;
}
"""


def test_host_without_python_gets_clean_error(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a Python-free VapourSynth host")
    vsdir = Path(vs.__file__).parent
    (tmp_path / "host.c").write_text(HOST_C)
    subprocess.run([cc, "-std=c11", f"-I{vsdir / 'include'}", "host.c", "-o", "host", f"-L{vsdir}",
                    "-l:libvapoursynth.so.4", f"-Wl,-rpath,{vsdir}"], cwd=tmp_path, check=True)
    res = subprocess.run([str(tmp_path / "host")], cwd=tmp_path, env=_clean_env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("espcn.Upscale: needs the vs_espcn Python package"), res.stdout
    assert "no Python runtime in this process" in res.stdout


def test_broken_package_import_gives_clean_error(tmp_path):
    fake = tmp_path / "shadow" / "vs_espcn"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('fake breakage 17')\n")
    script = """
        import vapoursynth as vs
        try:
            vs.core.espcn.Upscale(vs.core.std.BlankClip(format=vs.GRAY8))
        except vs.Error as exc:
            print(exc)
    """
    res = _run_python(script, tmp_path, PYTHONPATH=str(tmp_path / "shadow"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("espcn.Upscale: needs the vs_espcn Python package"), res.stdout
    assert "ImportError: fake breakage 17" in res.stdout


def test_entry_convert_args_decodes_data():
    args = entry.convert_args({"model": b"a\xc3\xa9.onnx", "tilesize": 64, "static_shape": 0, "scale": 2, "clamp": 0})
    assert args == {"model": "a\u00e9.onnx", "tilesize": (64,), "static_shape": False, "scale": 2, "clamp": False}
    assert entry.convert_args({"tilesize": [8, 4]}) == {"tilesize": (8, 4)}
    assert str(REPO) in entry.__file__  # tests patch the source tree's module, which the shim uses here
