"""Frames in flight: the shim's `espcn.Network` is an fmParallel filter that computes up to `num_streams`
frames at once, and the bytes never depend on how many frames run together."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import vapoursynth as vs

from test_support import noise_clip, onnx_dir, random2  # noqa: F401 (fixtures)
from vs_espcn import graph
from vs_espcn.backends import ort as ort_backend


@pytest.fixture
def threads(core):
    """Set core.num_threads for one test and restore it."""
    saved = core.num_threads
    yield lambda n: setattr(core, "num_threads", n)
    core.num_threads = saved


def _frames(clip: vs.VideoNode) -> list[bytes]:
    """Every frame's Y plane, requested all at once (as vspipe does)."""
    futures = [clip.get_frame_async(n) for n in range(clip.num_frames)]
    return [np.asarray(f.result()[0]).tobytes() for f in futures]


def test_num_streams_frames_run_at_once_and_equal_sequential(core, random2, monkeypatch, threads):
    threads(8)
    clip = noise_clip(vs.YUV420P8, 48, 32, length=9)
    sequential = _frames(graph.upscale(clip, model=str(random2), backend="ort", num_streams=1))
    real_run, lock, state = ort_backend.OrtBackend.run, threading.Lock(), {"now": 0, "peak": 0}

    def slow_run(self, lr):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.15)  # releases the GIL, as the real backends do while the network runs
        try:
            return real_run(self, lr)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(ort_backend.OrtBackend, "run", slow_run)
    start = time.perf_counter()
    parallel = _frames(graph.upscale(clip, model=str(random2), backend="ort", num_streams=3))
    elapsed = time.perf_counter() - start
    assert state["peak"] == 3  # never more than num_streams, and really that many
    assert elapsed < 9 * 0.15 * 0.6  # 9 frames at 3 at a time, not one by one
    assert parallel == sequential


@pytest.mark.parametrize("backend", ["ort", "ov"])
def test_bytes_do_not_depend_on_core_threads(core, random2, threads, backend):
    from vs_espcn import backends

    if backend == "ov" and not backends.ov_status()[0]:
        pytest.skip(f"OpenVINO unusable: {backends.ov_status()[1]}")
    clip = noise_clip(vs.YUV420P10, 64, 40, length=6)
    runs = []
    for n in (1, 4):
        threads(n)
        out = graph.upscale(clip, model=str(random2), backend=backend)
        runs.append(_frames(out))
    assert runs[0] == runs[1]


def test_auto_num_streams(core, random2):
    small = core.std.BlankClip(format=vs.GRAY8, width=720, height=480)
    big = core.std.BlankClip(format=vs.GRAY8, width=3840, height=2160)
    assert graph.auto_streams(small) == graph.AUTO_STREAMS == 2
    assert graph.auto_streams(big) == 1  # tiled planes: a second frame would double the peak memory


def test_ort_threads_split_over_the_frames_that_can_overlap(core, random2, monkeypatch, threads):
    """ORT's threads go to the frames in flight, never to more frames than VapourSynth runs at once: with
    core.num_threads=1 the one frame has every thread."""
    from vs_espcn import backends

    seen = []
    real = backends._create_ort
    monkeypatch.setattr(backends, "_create_ort", lambda m, s, o: seen.append(o) or real(m, s, o))
    clip = noise_clip(vs.GRAY8, 32, 24, length=1)
    threads(4)
    graph.upscale(clip, model=str(random2), backend="ort", threads=4, num_streams=2)
    threads(1)
    graph.upscale(clip, model=str(random2), backend="ort", threads=4, num_streams=2)
    assert [o.intra_threads() for o in seen] == [3, 4]  # 2 frames: 2 pool threads + 2 callers
