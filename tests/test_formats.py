"""Every supported format: output format/size, known answer (nearest model == resize.Point) and
Y equal to onnxruntime run directly on the plane (exact for float, exact after rounding for int)."""
from __future__ import annotations

import numpy as np
import pytest
import vapoursynth as vs

from test_support import (fmt_of, nearest2, noise_clip, onnx_dir, plane, random2, random3,  # noqa: F401
                          reference_y, reference_y_int)
from vs_espcn import graph

core = vs.core
INT, FLT = vs.INTEGER, vs.FLOAT
SUBS = [(1, 1), (1, 0), (0, 0), (0, 1), (2, 0), (2, 2)]
DEPTHS = [(INT, 8), (INT, 9), (INT, 10), (INT, 12), (INT, 14), (INT, 16), (FLT, 16), (FLT, 32)]
FORMATS = ([fmt_of(vs.GRAY, st, b) for st, b in DEPTHS]
           + [fmt_of(vs.YUV, st, b, sw, sh) for st, b in DEPTHS for sw, sh in SUBS])


def _size(fmt: vs.VideoFormat, odd: bool) -> tuple[int, int]:
    """A frame size valid for fmt's subsampling; odd where the format allows it."""
    mw, mh = 1 << fmt.subsampling_w, 1 << fmt.subsampling_h
    w, h = (4 * 9 + (1 if odd else 0), 4 * 7 + (1 if odd else 0))
    return w - w % mw, h - h % mh


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_format_known_answer(fmt, nearest2):
    """Output keeps format and doubles size; Y equals resize.Point (nearest model is exact)."""
    w, h = _size(fmt, odd=True)
    clip = noise_clip(fmt, w, h, length=1)
    out = graph.upscale(clip, model=str(nearest2), backend="ort")
    assert (out.format.id, out.width, out.height, out.num_frames) == (fmt.id, 2 * w, 2 * h, 1)
    ref = core.resize.Point(clip, 2 * w, 2 * h)
    assert np.array_equal(plane(out), plane(ref))
    for p in range(1, fmt.num_planes):
        assert plane(out, p=p).shape == plane(ref, p=p).shape


@pytest.mark.parametrize("bits", [8, 10, 16])
@pytest.mark.parametrize("size", [(37, 29), (64, 48)])
def test_int_y_equals_direct_onnxruntime(bits, size, random2):
    """Integer Y: equal to onnxruntime on code/(255*2^(bits-8)), clamped and rounded back."""
    fmt = fmt_of(vs.GRAY, INT, bits)
    clip = noise_clip(fmt, *size, length=1, seed=bits)
    out = graph.upscale(clip, model=str(random2), backend="ort")
    y = plane(clip)
    assert np.array_equal(plane(out), reference_y_int(random2, y, bits))


@pytest.mark.parametrize("bits", [16, 32])
def test_float_y_equals_direct_onnxruntime(bits, random3):
    """Float/half Y: fed as is, written back limited to the source range (clamp=1); half via float32."""
    fmt = fmt_of(vs.YUV, FLT, bits, 0, 0)
    clip = noise_clip(fmt, 31, 23, length=1, seed=bits)
    out = graph.upscale(clip, model=str(random3), backend="ort")
    y = plane(clip)
    ref = reference_y(random3, y).astype(y.dtype)
    got = plane(out)
    assert got.dtype == y.dtype and got.shape == (69, 93)
    assert np.array_equal(got, ref)


def test_limited_range_8bit_reaches_network_as_trained(nearest2):
    """The nearest model returns its input, so codes 16..235 survive the round trip untouched."""
    clip = core.std.BlankClip(format=vs.GRAY8, width=8, height=4, color=[16])
    clip2 = core.std.BlankClip(format=vs.GRAY8, width=8, height=4, color=[235])
    for c, v in ((clip, 16), (clip2, 235)):
        assert np.all(plane(graph.upscale(c, model=str(nearest2), backend="ort")) == v)


@pytest.mark.parametrize("bits", [8, 10])
def test_int_clamp_follows_the_source_range(bits, random2):
    """Integer Y from a source that spans only part of the code range: clamp=1 limits the output to that
    part (what a direct onnxruntime run, rounded and limited the same way, gives), clamp=0 does not."""
    fmt = fmt_of(vs.GRAY, vs.INTEGER, bits, 0, 0)
    clip = noise_clip(fmt, 30, 20, length=1, seed=bits)
    lo, hi = 60 << (bits - 8), 180 << (bits - 8)
    clip = core.std.Expr(clip, f"x {hi - lo} * {(1 << bits) - 1} / {lo} +")
    src = plane(clip)
    on = plane(graph.upscale(clip, model=str(random2), backend="ort"))
    off = plane(graph.upscale(clip, model=str(random2), backend="ort", clamp=False))
    np.testing.assert_array_equal(on, reference_y_int(random2, src, bits))
    np.testing.assert_array_equal(off, reference_y_int(random2, src, bits, clamp=False))
    assert on.min() >= src.min() and on.max() <= src.max()
    assert ((off < src.min()) | (off > src.max())).any() and not np.array_equal(on, off)


def test_int_output_is_clamped(onnx_dir):
    """A network whose output overshoots is limited to the source plane's [min, max] (default), or with
    clamp=0 to the format's code range."""
    import onnx
    from onnx import numpy_helper

    from onnx_models import make_espcn_onnx

    path = make_espcn_onnx(onnx_dir / "gain.onnx", 2, "nearest", activation="relu")
    m = onnx.load(path)
    for init in m.graph.initializer:
        if init.name == "w3":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3, "w3"))
    onnx.save(m, path)
    clip = core.std.BlankClip(format=vs.GRAY10, width=6, height=4, color=[600])
    assert np.all(plane(graph.upscale(clip, model=str(path), backend="ort", clamp=False)) == 1023)
    assert np.all(plane(graph.upscale(clip, model=str(path), backend="ort")) == 600)
    ramp = noise_clip(vs.GRAYS, 8, 6, length=1)  # float: unlimited without clamp, the source's range with it
    raw = plane(graph.upscale(ramp, model=str(path), backend="ort", clamp=False))
    src = plane(ramp)
    assert raw.max() > 2 * src.max()
    np.testing.assert_array_equal(plane(graph.upscale(ramp, model=str(path), backend="ort")),
                                  np.clip(raw, src.min(), src.max()))


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (9, 1), (3, 2)])
def test_tiny_planes(size, random2, nearest2):
    """Planes smaller than the receptive field still work (whole plane, mirrored as far as it goes)."""
    clip = noise_clip(vs.core.get_video_format(vs.GRAY16), *size, length=1, seed=sum(size))
    out = graph.upscale(clip, model=str(random2), backend="ort")
    assert np.array_equal(plane(out), reference_y_int(random2, plane(clip), 16))
    tiled = graph.upscale(clip, model=str(nearest2), backend="ort", tilesize=[1, 1])
    assert np.array_equal(plane(tiled), plane(core.resize.Point(clip, 2 * size[0], 2 * size[1])))
