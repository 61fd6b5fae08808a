"""Bad pixels, bad models and long runs: one NaN stays local, out-of-range codes are limited to the
format, a model misbehaving at the tile size is an error (never a scrambled frame), sessions are freed
with their graph, and ONNX Runtime records no telemetry."""
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
from vs_espcn import graph
from vs_espcn.backends import ort as ort_backend


def _with_plane(clip: vs.VideoNode, values: np.ndarray) -> vs.VideoNode:
    """`clip` whose first plane holds `values` in every frame."""
    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        np.asarray(out[0])[:] = values
        return out
    return clip.std.ModifyFrame(clip, fill)


@pytest.mark.parametrize("clamp", [True, False])
def test_one_nan_pixel_stays_in_its_neighbourhood(core, random2, clamp):
    clip = noise_clip(vs.GRAYS, 48, 40, length=1)
    y = plane(clip).copy()
    y[20, 24] = np.nan
    out = plane(graph.upscale(_with_plane(clip, y), model=str(random2), backend="ort", clamp=clamp))
    bad = np.argwhere(np.isnan(out))
    assert len(bad) > 0  # the network does see the NaN
    # receptive radius 4 LR pixels -> an 18x18 HR block around the pixel at most
    assert bad[:, 0].min() >= 2 * (20 - 4) and bad[:, 0].max() <= 2 * (20 + 4) + 1
    assert bad[:, 1].min() >= 2 * (24 - 4) and bad[:, 1].max() <= 2 * (24 + 4) + 1
    assert np.isfinite(np.delete(out.ravel(), np.ravel_multi_index(bad.T, out.shape))).all()


def test_all_nan_plane_is_nan_not_an_error(core, random2):
    clip = noise_clip(vs.GRAYS, 24, 16, length=1)
    out = plane(graph.upscale(_with_plane(clip, np.full((16, 24), np.nan, np.float32)), model=str(random2),
                              backend="ort"))
    assert np.isnan(out).all()


@pytest.mark.parametrize("clamp", [True, False])
def test_codes_above_the_depth_come_out_within_the_format(core, random2, clamp):
    clip = noise_clip(vs.GRAY10, 32, 24, length=1)
    y = plane(clip).copy()
    y[5:9, 5:9] = 60000  # not a 10-bit code: a broken source filter's output
    out = plane(graph.upscale(_with_plane(clip, y), model=str(random2), backend="ort", clamp=clamp))
    assert out.max() <= 1023 and out.min() >= 0
    all_high = plane(graph.upscale(_with_plane(clip, np.full_like(y, 60000)), model=str(random2), backend="ort"))
    assert (all_high == 1023).all()


def test_a_model_misbehaving_at_the_tile_size_is_a_frame_error(core, random2, monkeypatch):
    """The load-time probe is 9x7; a network whose output has the right number of pixels but the wrong
    shape at the real tile size must fail the frame, not scramble it."""
    out = graph.upscale(noise_clip(vs.GRAY8, 40, 24, length=1), model=str(random2), backend="ort")
    real = ort_backend.OrtBackend.run
    monkeypatch.setattr(ort_backend.OrtBackend, "run", lambda self, lr: real(self, lr).T.copy())
    with pytest.raises(vs.Error, match=r"espcn.Upscale: frame 0: ValueError: the model maps a 48x32 tile "
                                       r"to shape \(96, 64\), expected \(64, 96\)"):
        out.get_frame(0)


def test_sessions_are_freed_with_their_graph(core, random2):
    gc.collect()
    before = len(ort_backend._sessions)
    out = graph.upscale(noise_clip(vs.GRAY8, 16, 16, length=1), model=str(random2), backend="ort", threads=3)
    out.get_frame(0)
    assert len(ort_backend._sessions) == before + 1
    del out
    gc.collect()
    assert len(ort_backend._sessions) == before


def test_onnxruntime_records_no_telemetry(tmp_path, random2):
    """A process that runs Upscale on ONNX Runtime leaves nothing under ~/.cache/Microsoft."""
    script = textwrap.dedent(f"""
        import vapoursynth as vs
        clip = vs.core.std.BlankClip(format=vs.GRAY8, width=16, height=16, length=1)
        vs.core.espcn.Upscale(clip, model={str(random2)!r}, backend="ort").get_frame(0)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ORT_DISABLE_TELEMETRY")}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / ".cache"))
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / ".cache" / "Microsoft").exists()


@pytest.mark.parametrize("backend", ["ort", "ov"])
def test_model_file_name_that_is_not_utf8(core, random2, tmp_path, backend):
    """A valid model under a non-UTF-8 name (a bytes path, as VapourSynth passes it on) loads in every
    backend: they read the model from bytes, never hand the path to the runtime."""
    from vs_espcn import backends

    if backend == "ov" and not backends.ov_status()[0]:
        pytest.skip(f"OpenVINO unusable: {backends.ov_status()[1]}")
    name = os.fsencode(tmp_path) + b"/model\xff.onnx"
    with open(name, "wb") as f:
        f.write(random2.read_bytes())
    clip = core.std.BlankClip(format=vs.GRAY8, width=16, height=12, length=1)
    out = core.espcn.Upscale(clip, model=name, backend=backend)
    assert (out.width, out.height) == (32, 24) and out.get_frame(0) is not None


def test_heap_trimmer_trims_once_per_interval_from_any_thread():
    """malloc_trim runs when the interval has passed, never before, and one caller at a time."""
    import threading

    from vs_espcn.heap import heap_trimmer

    now, calls, gate = [0.0], [], threading.Event()

    def fake_trim(pad: int) -> int:
        calls.append(pad)
        gate.wait(2)  # holds the trim while a second thread arrives
        return 1

    tick = heap_trimmer(1.0, clock=lambda: now[0], trim=fake_trim)
    tick()
    now[0] = 0.99
    tick()
    assert calls == []
    now[0] = 1.0
    first = threading.Thread(target=tick)
    first.start()
    while not calls:
        pass
    tick()  # another thread while the first trims: skips, does not wait
    gate.set()
    first.join()
    assert calls == [0]
    tick()  # not due again until a second after the trim
    now[0] = 2.5
    tick()
    assert calls == [0, 0]


def test_soak_command_prints_rss(tmp_path):
    """`python -m vs_espcn soak --pure` runs a short soak and prints its RSS table on stdout."""
    res = subprocess.run([sys.executable, "-m", "vs_espcn", "soak", "--pure", "--frames", "40", "--every", "20",
                          "--width", "64", "--height", "48"], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()]
    assert rows[0][:2] == ["frame", "rss_mb"] and [r[0] for r in rows[1:]] == ["0", "20", "40"]
    assert all(float(r[1]) > 10 for r in rows[1:])  # real RSS figures, in MB
