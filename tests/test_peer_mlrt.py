"""Peer check: our Y output equals vs-mlrt's `core.ort.Model` running the same ONNX (CPU) on the clip
extended by our mirrored border (vs-mlrt itself meets the edge with the network's zero padding)."""
from __future__ import annotations

import numpy as np
import pytest
import vapoursynth as vs

from test_support import mirror_clip, noise_clip, onnx_dir, plane, random2, random3  # noqa: F401
from vs_espcn import graph

core = vs.core


@pytest.fixture(scope="module")
def mlrt():
    if not hasattr(core, "ort"):
        pytest.skip("vs-mlrt ORT plugin (vapoursynth-mlrt-ort) not installed")
    return core.ort


@pytest.mark.parametrize("size", [(67, 45), (128, 72)])
def test_grays_equals_vs_mlrt(mlrt, size, random2, random3):
    for model in (random2, random3):
        clip = noise_clip(vs.GRAYS, *size, length=2, seed=size[0])
        ours = graph.upscale(clip, model=str(model), backend="ort", clamp=False)  # the raw network
        r = ours.width // clip.width
        peer = mlrt.Model([mirror_clip(clip, 4)], network_path=str(model), provider="CPU")
        peer = peer.std.Crop(4 * r, 4 * r, 4 * r, 4 * r)
        assert (ours.width, ours.height) == (peer.width, peer.height)
        for n in range(2):
            assert np.array_equal(plane(ours, n), plane(peer, n))
        bare = mlrt.Model([clip], network_path=str(model), provider="CPU")  # zero padding: other edges
        assert not np.array_equal(plane(ours, 0), plane(bare, 0))


def test_bench_peer_rows_do_our_job(mlrt, random2):
    """The benchmark's vs-mlrt rows compute what Upscale(clamp=0) computes, so its ratios compare one job."""
    from vs_espcn import bench

    clip = noise_clip(vs.YUV420P8, 42, 24, length=1, seed=3)
    ours = graph.upscale(clip, model=str(random2), backend="ort", clamp=False)
    peer = bench.mlrt_job(clip, random2, 4, 2, "ort", provider="CPU")
    for p in range(3):  # Y from the network, chroma from the same Spline36
        np.testing.assert_array_equal(plane(peer, p=p), plane(ours, p=p))
    grays = noise_clip(vs.GRAYS, 41, 23, length=1, seed=3)
    np.testing.assert_array_equal(plane(bench.mirror_edge(grays, 4)), np.pad(plane(grays), 4, mode="symmetric"))
