"""Tile plan properties and tiled == untiled (the mirrored border behaves as in one whole-plane run)."""
from __future__ import annotations

import numpy as np
import pytest
import vapoursynth as vs

from test_support import noise_clip, onnx_dir, plane, random2, random3  # noqa: F401
from vs_espcn import backends, frames, graph, models, tiling


@pytest.mark.parametrize("pad", [0, 4])
@pytest.mark.parametrize("length,tile,overlap", [
    (1, 1, 0), (7, 3, 2), (100, 32, 4), (100, 100, 4), (101, 50, 4), (1080, 544, 4), (33, 8, 16),
    (5, 64, 4), (2160, 544, 4)])
def test_axis_plan_covers_once_with_context(length, tile, overlap, pad):
    window, spans = tiling.plan_axis(length, tile, overlap, pad)
    extended = length + 2 * pad
    assert window == min(extended, max(s.core1 - s.core0 for s in spans) + 2 * overlap)
    assert len(spans) == -(-length // tile)
    covered = np.zeros(length, int)
    for s in spans:
        assert 0 <= s.win and s.win + window <= extended  # every window the same size, inside
        assert s.core1 - s.core0 <= tile
        covered[s.core0:s.core1] += 1
        c0, c1 = s.core0 + pad, s.core1 + pad  # the core in the extended plane
        assert c0 - s.win >= min(overlap, c0)  # left context (or all the extension there is)
        assert s.win + window - c1 >= min(overlap, extended - c1)  # right context
    assert np.all(covered == 1)


def test_axis_plan_rejects_nonsense():
    for args in ((0, 4, 0), (10, 0, 0), (10, 4, -1), (10, 4, 4, -1)):
        with pytest.raises(ValueError):
            tiling.plan_axis(*args)


def test_auto_tilesize_bounds_window_pixels():
    assert tiling.auto_tilesize(1080, 1920) == (1080, 1920)  # whole 1080p plane
    h, w = tiling.auto_tilesize(2160, 3840)
    (wh, ww), tiles = tiling.plan(2160, 3840, h, w, 4)
    assert wh * ww <= tiling.AUTO_PIXELS * 1.02 and len(tiles) >= 4
    h, w = tiling.auto_tilesize(64, 100000)
    assert h * w <= tiling.AUTO_PIXELS


@pytest.mark.parametrize("pad", [0, 4])
@pytest.mark.parametrize("size", [(37, 53), (64, 64), (17, 90)])
@pytest.mark.parametrize("tile", [(8, 8), (16, 11), (5, 64), (20, 7)])
def test_tiled_equals_untiled_frame_path(size, tile, pad, random2):
    """PlaneUpscaler with small tiles == one run on the whole (mirror-extended) plane, within 1e-6."""
    info = models.load(random2)
    net = backends.create("ort", info, size)
    lr = np.random.default_rng(5).random(size, dtype=np.float32)
    k = 2 * pad  # the extension, in output pixels
    whole = net.run(np.pad(lr, pad, mode="symmetric")).copy()[k:k + 2 * size[0], k:k + 2 * size[1]]
    codec = frames.Codec(False, 1.0, 0)
    up = frames.PlaneUpscaler(net, 2, tiling.make_plan(*size, tile, info.radius, pad), codec, clamp=False)
    out = np.full((size[0] * 2, size[1] * 2), np.nan, np.float32)
    up.process(lr, out)
    assert len(up.tiles) > 1
    assert np.abs(out - whole).max() <= 1e-6


def test_too_small_overlap_is_raised_to_radius(random3):
    """overlap below the receptive radius is raised to it ("never less"), so tiles stay exact."""
    clip = noise_clip(vs.GRAYS, 45, 38, length=1)
    whole = plane(graph.upscale(clip, model=str(random3), backend="ort"))
    tiled = plane(graph.upscale(clip, model=str(random3), backend="ort", tilesize=[9, 7], overlap=0))
    assert np.abs(whole - tiled).max() <= 1e-6


def test_overlap_smaller_than_radius_would_differ(random2):
    """Guard that the exactness above is earned: 0 context visibly changes the output."""
    info = models.load(random2)
    net = backends.create("ort", info, (40, 40))
    lr = np.random.default_rng(6).random((40, 40), dtype=np.float32)
    out = np.empty((80, 80), np.float32)
    plan = tiling.make_plan(40, 40, (10, 10), 0)
    frames.PlaneUpscaler(net, 2, plan, frames.Codec(False, 1.0, 0), clamp=False).process(lr, out)
    assert np.abs(out - net.run(lr)).max() > 1e-3


@pytest.mark.parametrize("fmt", [vs.YUV420P8, vs.GRAY16, vs.GRAYH])
def test_tiled_graph_equals_untiled(fmt, random2):
    """Through the graph with explicit [w, h] tiles: int planes may differ only at exact .5 ties."""
    clip = noise_clip(vs.core.get_video_format(fmt), 52, 38, length=1, seed=9)
    a = plane(graph.upscale(clip, model=str(random2), backend="ort"))
    b = plane(graph.upscale(clip, model=str(random2), backend="ort", tilesize=[16, 12]))
    diff = np.abs(a.astype(np.float64) - b)
    assert diff.max() <= (1 if a.dtype.kind == "u" else 1e-3)
    assert np.mean(diff > 0) < 1e-3


def test_graph_plans_once_and_shares_the_plan(monkeypatch, random2):
    """graph.tile_plan computes the tiling once; the backend gets its window and the frame path
    its tiles (the same objects), instead of a second tiling.plan in PlaneUpscaler."""
    calls = []
    real = tiling.plan
    monkeypatch.setattr(tiling, "plan", lambda *a: calls.append(a) or real(*a))
    seen = {}
    real_up = frames.PlaneUpscaler.__init__

    def spy(self, backend, scale, plan, codec, **kw):
        seen["plan"] = plan
        real_up(self, backend, scale, plan, codec, **kw)

    monkeypatch.setattr(frames.PlaneUpscaler, "__init__", spy)
    clip = noise_clip(vs.GRAY8, 45, 30, length=1)
    out = graph.upscale(clip, model=str(random2), backend="ort", tilesize=[20, 17])
    plane(out)
    assert len(calls) == 1
    p = seen["plan"]
    assert (p.core, p.overlap, p.window) == ((17, 20), 4, (23, 23)) and len(p.tiles) == 6
    assert graph.tile_plan(clip, 4, (17, 20), -1)[2] == (23, 23)  # index 2 = window (engines CLI)


def test_tiny_tiles_are_raised_to_the_minimum(caplog, random2):
    """tilesize=[1] would mean one backend call per LR pixel (8 million on a 4K plane, looks like
    a hang): sides below max(16, 2*overlap) are raised, with a note, and the output is unchanged."""
    import logging

    clip = noise_clip(vs.GRAYS, 70, 40, length=1)
    assert graph.tile_plan(clip, 4, (1, 1), -1).core == (16, 16)
    assert graph.tile_plan(clip, 4, (1, 50), 12).core == (24, 50)  # 2 * overlap when larger
    assert graph.tile_plan(clip, 4, (20, 30), -1).core == (20, 30)  # big enough: untouched
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        tiled = graph.upscale(clip, model=str(random2), backend="ort", tilesize=[1])
    assert any("raised to at least 16" in r.getMessage() for r in caplog.records)
    whole = graph.upscale(clip, model=str(random2), backend="ort")
    assert np.abs(plane(tiled) - plane(whole)).max() <= 1e-6
