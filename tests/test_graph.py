"""The filter graph: argument checks, chroma siting and alignment, frame props, parallel requests,
and the same behaviour through `core.espcn.Upscale` when the native shim is loaded."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import vapoursynth as vs

from test_support import fmt_of, nearest2, noise_clip, onnx_dir, plane, random2, random3  # noqa: F401
from vs_espcn import backends, graph, models, precision

core = vs.core
INT, FLT = vs.INTEGER, vs.FLOAT


def _raises(match: str, **kwargs) -> None:
    """Upscale(**kwargs) raises a vs.Error naming espcn.Upscale and containing `match`."""
    with pytest.raises(vs.Error, match=match) as info:
        graph.upscale(**kwargs)
    assert "espcn.Upscale" in str(info.value)


# ----------------------------------------------------------------------------- checks
def test_rejects_rgb(nearest2):
    _raises("RGB.*supported.*YUV", clip=core.std.BlankClip(format=vs.RGB24), model=str(nearest2))


def test_rejects_variable_format_and_size(nearest2):
    _raises("variable-format", clip=core.std.BlankClip(varformat=True), model=str(nearest2))
    _raises("variable-size", clip=core.std.BlankClip(varsize=True), model=str(nearest2))


@pytest.mark.parametrize("fmt", [fmt_of(vs.YUV, INT, 8, 2, 1), fmt_of(vs.GRAY, INT, 32),
                                 fmt_of(vs.YUV, INT, 8, 3, 3)], ids=lambda f: f.name)
def test_rejects_unsupported_formats(fmt, nearest2):
    _raises("unsupported", clip=core.std.BlankClip(format=fmt, width=64, height=64), model=str(nearest2))


def test_rejects_non_video(nearest2):
    _raises("video clip", clip=core.std.BlankAudio(), model=str(nearest2))


@pytest.mark.parametrize("scale", [0, 1, 5, 8])
def test_rejects_bad_scale(scale):
    _raises("scale must be 2, 3 or 4", clip=core.std.BlankClip(format=vs.GRAY8), scale=scale)


def test_rejects_scale_model_mismatch(nearest2):
    _raises("does not match the model's scale 2", clip=core.std.BlankClip(format=vs.GRAY8),
            scale=3, model=str(nearest2))


def test_rejects_anime_other_scales():
    _raises('"anime" supports scale=2 only', clip=core.std.BlankClip(format=vs.GRAY8), scale=4,
            model="anime")


def test_rejects_missing_and_corrupt_models(tmp_path):
    clip = core.std.BlankClip(format=vs.GRAY8)
    _raises("not found", clip=clip, model=str(tmp_path / "nope.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 50)
    _raises("not a valid ONNX|no valid 'scale'|not an ESPCN", clip=clip, model=str(bad))
    _raises("not a file", clip=clip, model=str(tmp_path))


def test_missing_shipped_model_is_clear(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "MODEL_DIR", tmp_path)
    _raises("shipped model espcn_x3.onnx is missing", clip=core.std.BlankClip(format=vs.GRAY8), scale=3)


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel": "gauss"}, "unknown kernel.*spline36"),
    ({"backend": "cuda"}, "unknown backend.*ort"),
    ({"tilesize": [0]}, "tilesize"),
    ({"tilesize": [8, 8, 8]}, "tilesize"),
    ({"overlap": -2}, "overlap"),
    ({"threads": -1}, "threads"),
    ({"num_streams": -1}, "num_streams"),
    ({"num_streams": 33}, r"num_streams=33 is invalid; num_streams must be 0..32"),
    ({"threads": 1000}, r"threads=1000 is invalid; threads must be 0..256"),
    ({"threads": 100000}, "threads must be 0..256"),
    ({"clamp": 2}, r"clamp=2 is invalid; clamp must be 0 or 1"),
    ({"clamp": -1}, r"clamp=-1 is invalid"),
    ({"fp16": 5}, r"fp16=5 is invalid; fp16 must be 0 or 1"),
    ({"static_shape": 3}, "static_shape"),
    ({"precision": "fp8"}, "unknown precision"),
])
def test_rejects_bad_options(kwargs, match, nearest2):
    _raises(match, clip=core.std.BlankClip(format=vs.GRAY8), model=str(nearest2), **kwargs)


def test_trt_unavailable_names_reason_and_fallback(nearest2):
    ok, _ = backends.trt_status()
    if ok:
        pytest.skip("TensorRT is usable here")
    _raises('backend="trt" is unavailable.*use backend=.*"ort"', clip=core.std.BlankClip(format=vs.GRAY8),
            model=str(nearest2), backend="trt")


def test_auto_backend_falls_back_to_the_cpu(random2, monkeypatch):
    """Without TensorRT, on a CPU without bf16, auto is ONNX Runtime fp32 (the faster fp32 runtime)."""
    clip = noise_clip(vs.GRAYS, 40, 30, length=1)
    if backends.trt_status()[0]:
        pytest.skip("TensorRT is usable here: auto would not pick a CPU backend")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    a = graph.upscale(clip, model=str(random2), backend="auto")
    b = graph.upscale(clip, model=str(random2), backend="ort")
    assert np.array_equal(plane(a), plane(b))
    if backends.ov_status()[0]:  # and not OpenVINO's fp32, whose sums differ in the last bits
        c = graph.upscale(clip, model=str(random2), backend="ov")
        assert not np.array_equal(plane(a), plane(c))


# ----------------------------------------------------------------------------- chroma
def _ramp(fmt: vs.VideoFormat, width: int, height: int, loc: int) -> vs.VideoNode:
    """Smooth horizontal+vertical ramps in every plane, with _ChromaLocation = loc."""
    blank = core.std.BlankClip(format=fmt, width=width, height=height, length=1)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p in range(out.format.num_planes):
            a = np.asarray(out[p])
            yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]]
            a[...] = np.round(40 + 150 * (0.5 + 0.5 * np.sin(xx / 3.0 + yy / 5.0 + p)))
        out.props["_ChromaLocation"] = loc
        return out

    return core.std.ModifyFrame(blank, blank, fill)


@pytest.mark.parametrize("loc", [0, 1, 2])
@pytest.mark.parametrize("kernel", ["spline36", "bicubic"])
def test_chroma_equals_resize_with_siting(loc, kernel, nearest2):
    """U/V equal core.resize.<kernel> told the siting explicitly; the siting changes the answer."""
    src = _ramp(vs.YUV420P8, 48, 32, loc)
    out = graph.upscale(src, model=str(nearest2), backend="ort", kernel=kernel)
    fn = getattr(core.resize, graph.KERNELS[kernel])
    bare = core.std.RemoveFrameProps(src, "_ChromaLocation")
    ref = fn(bare, 96, 64, chromaloc_in=loc, chromaloc=loc)
    other = fn(bare, 96, 64, chromaloc_in=(loc + 1) % 3, chromaloc=(loc + 1) % 3)
    for p in (1, 2):
        assert np.array_equal(plane(out, p=p), plane(ref, p=p))
        assert not np.array_equal(plane(out, p=p), plane(other, p=p))


# zimg chroma locations: 0 left, 1 center, 2 top-left, 3 top, 4 bottom-left, 5 bottom
LAYOUTS = {"420": (1, 1), "422": (1, 0), "440": (0, 1), "411": (2, 0), "410": (2, 2)}


def _other_siting(loc: int, ss: tuple[int, int]) -> int:
    """A siting that differs from `loc` along an axis the layout subsamples (so it must change U/V)."""
    return loc ^ 1 if ss[0] else (loc + 2) % 6


@pytest.mark.parametrize("loc", range(6))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_chroma_siting_every_location_and_layout(layout, loc, nearest2):
    """_ChromaLocation 0-5 on 420/422/440/411/410: U/V equal core.resize.Spline36 of the whole
    clip told that siting explicitly, and differ from the one a different siting gives."""
    ss = LAYOUTS[layout]
    src = _ramp(fmt_of(vs.YUV, INT, 8, *ss), 48, 32, loc)
    out = graph.upscale(src, model=str(nearest2), backend="ort")
    bare = core.std.RemoveFrameProps(src, "_ChromaLocation")
    ref = core.resize.Spline36(bare, 96, 64, chromaloc_in=loc, chromaloc=loc)
    other = _other_siting(loc, ss)
    wrong = core.resize.Spline36(bare, 96, 64, chromaloc_in=other, chromaloc=other)
    for p in (1, 2):
        assert np.array_equal(plane(out, p=p), plane(ref, p=p))
        assert not np.array_equal(plane(out, p=p), plane(wrong, p=p))
    assert out.get_frame(0).props["_ChromaLocation"] == loc


@pytest.mark.parametrize("fmt", [vs.YUV420P8, vs.GRAY10, vs.YUV444P16], ids=["yuv420p8", "gray10", "yuv444p16"])
def test_full_range_is_fed_like_limited_and_kept(fmt, random2):
    """_Range=1 (full; R81: 0 = limited, 1 = full): Y is still fed as code/(255*2^(bits-8)), so
    it equals onnxruntime run directly on that normalisation, exactly as the same clip tagged
    limited; chroma is the plain resize; _Range stays 1."""
    from test_support import reference_y_int

    f = core.get_video_format(fmt)
    full = noise_clip(f, 34, 22, length=1, seed=7, props={"_Range": 1})
    limited = noise_clip(f, 34, 22, length=1, seed=7, props={"_Range": 0})
    out = graph.upscale(full, model=str(random2), backend="ort")
    want = reference_y_int(random2, plane(full), f.bits_per_sample)
    assert np.array_equal(plane(out), want)
    assert np.array_equal(plane(out), plane(graph.upscale(limited, model=str(random2), backend="ort")))
    assert out.get_frame(0).props["_Range"] == 1
    ref = core.resize.Spline36(full, 68, 44)
    for p in range(1, f.num_planes):
        assert np.array_equal(plane(out, p=p), plane(ref, p=p))


@pytest.mark.parametrize("field_based", [1, 2])
def test_interlaced_flag_does_not_change_chroma(field_based, nearest2):
    """Luma goes through the network as progressive, so chroma must too: a clip flagged
    _FieldBased (1 bottom/2 top field first) gives the same U/V as the same clip flagged 0,
    and keeps its flag."""
    src = _ramp(vs.YUV420P8, 48, 32, 0)
    progressive = graph.upscale(src.std.SetFrameProps(_FieldBased=0), model=str(nearest2), backend="ort")
    flagged = graph.upscale(src.std.SetFrameProps(_FieldBased=field_based), model=str(nearest2), backend="ort")
    for p in range(3):
        assert np.array_equal(plane(flagged, p=p), plane(progressive, p=p))
    assert flagged.get_frame(0).props["_FieldBased"] == field_based
    per_field = core.resize.Spline36(src.std.SetFrameProps(_FieldBased=field_based), 96, 64)
    assert not np.array_equal(plane(per_field, p=1), plane(progressive, p=1))  # the test has teeth


def _crossing(row: np.ndarray, mid: float) -> float:
    """Sub-pixel position where a rising edge crosses `mid` (linear interpolation)."""
    i = int(np.argmax(row >= mid))
    return i - 1 + (mid - row[i - 1]) / (row[i] - row[i - 1])


@pytest.mark.parametrize("ss,loc,shift", [((0, 0), 0, 0.0), ((1, 1), 1, 0.0), ((1, 1), 0, -1.0)])
def test_luma_chroma_edges_stay_aligned(ss, loc, shift, nearest2):
    """A vertical edge at the same source position in Y and U lands at the same output column
    (left-sited 4:2:0 chroma sits half a source pixel left by definition: -1 output pixel)."""
    fmt = fmt_of(vs.YUV, FLT, 32, *ss)
    blank = core.std.BlankClip(format=fmt, width=64, height=16, length=1)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p in range(3):
            a = np.asarray(out[p])
            edge = 32 >> (ss[0] if p else 0)
            a[:, :edge], a[:, edge:] = 0.2, 0.8
        out.props["_ChromaLocation"] = loc
        return out

    src = core.std.ModifyFrame(blank, blank, fill)
    out = graph.upscale(src, model=str(nearest2), backend="ort", kernel="spline36")
    y_edge = _crossing(plane(out)[8], 0.5)
    u_row = plane(out, p=1)[4]
    u_edge = (_crossing(u_row, 0.5) + 0.5) * (1 << ss[0]) - 0.5  # chroma px -> luma px (centre grid)
    if ss[0] and loc == 0:
        u_edge = _crossing(u_row, 0.5) * 2  # left-sited: chroma sample j sits on luma column 2j
    assert y_edge == pytest.approx(63.5, abs=1e-3)
    assert u_edge - y_edge == pytest.approx(shift, abs=0.05)


# ----------------------------------------------------------------------------- props
# R81 stores the deprecated _ColorRange as _Range (0 = limited, 1 = full)
PROPS = {"_Matrix": 1, "_Transfer": 1, "_Primaries": 1, "_Range": 1, "_ChromaLocation": 2,
         "_SARNum": 10, "_SARDen": 11, "_DurationNum": 1001, "_DurationDen": 30000, "_FieldBased": 1,
         "MyString": b"hello", "MyInt": 42, "MyFloats": [1.5, 2.5]}


@pytest.mark.parametrize("fmt", [vs.YUV420P10, vs.GRAY8], ids=["yuv", "gray"])
def test_frame_props_kept(fmt, nearest2):
    src = noise_clip(core.get_video_format(fmt), 32, 16, length=3, props=PROPS)
    out = graph.upscale(src, model=str(nearest2), backend="ort")
    for n in range(3):
        got, want = dict(out.get_frame(n).props), dict(src.get_frame(n).props)
        assert got == want
        assert all(k in got for k in PROPS)


# ----------------------------------------------------------------------------- threads
def test_parallel_requests_equal_sequential(random3):
    """Many frames in flight at once (thread pool + VapourSynth threads) give identical output."""
    src = noise_clip(vs.YUV420P8, 50, 36, length=12, seed=3)
    seq = graph.upscale(src, model=str(random3), backend="ort", tilesize=[24, 16])
    par = graph.upscale(src, model=str(random3), backend="ort", tilesize=[24, 16])
    want = [[np.array(seq.get_frame(n)[p]) for p in range(3)] for n in range(12)]
    with ThreadPoolExecutor(6) as pool:
        frames = list(pool.map(lambda n: par.get_frame(n), range(11, -1, -1)))[::-1]
    for n, f in enumerate(frames):
        for p in range(3):
            assert np.array_equal(np.asarray(f[p]), want[n][p])
    futures = [par.std.Invert().get_frame_async(n) for n in range(12)]
    assert all(f.result().width == 150 for f in futures)


# ----------------------------------------------------------------------------- the shim
def test_core_namespace_calls_graph(nearest2):
    """core.espcn.Upscale (the native shim) gives the same result and errors as graph.upscale."""
    if not hasattr(core, "espcn"):
        pytest.skip("native shim not loaded (core.espcn missing); see the install instructions")
    clip = noise_clip(vs.YUV420P8, 36, 20, length=2)
    out = core.espcn.Upscale(clip, 2, model=str(nearest2), backend="ort")
    assert (out.width, out.height, out.format.id) == (72, 40, vs.YUV420P8)
    assert np.array_equal(plane(out), plane(core.resize.Point(clip, 72, 40)))
    with pytest.raises(vs.Error, match="espcn.Upscale"):
        core.espcn.Upscale(core.std.BlankClip(format=vs.RGB24), 2, model=str(nearest2))


# ----------------------------------------------------------------------------- per-frame errors
def test_model_mismatch_fails_when_the_graph_is_built(tmp_path):
    """An x3 network labelled scale 2 is refused by Upscale itself, before any frame is requested."""
    from onnx_models import make_espcn_onnx

    bad = make_espcn_onnx(tmp_path / "x3_as_x2.onnx", 3, metadata={"scale": "2"})
    _raises("labelled scale 2 but its DepthToSpace blocksize is 3", clip=core.std.BlankClip(format=vs.GRAY8),
            model=str(bad))


def test_frame_failure_is_a_vs_error_naming_the_frame(monkeypatch, random2):
    """A backend failing at run time surfaces as vs.Error("espcn.Upscale: frame n: Type: msg"), that
    text alone (the shim's frame filter raises it as it is; the traceback stays on the debug log)."""
    from vs_espcn.backends import ort as ort_backend

    out = graph.upscale(noise_clip(vs.GRAY8, 24, 16, length=3), model=str(random2), backend="ort")

    def boom(self, lr):
        raise RuntimeError("device lost")

    monkeypatch.setattr(ort_backend.OrtBackend, "run", boom)
    with pytest.raises(vs.Error) as info:
        out.get_frame(2)
    assert str(info.value) == "espcn.Upscale: frame 2: RuntimeError: device lost"


def test_luma_frames_are_created_not_copied_from_a_blank(random2):
    """The Y clip requests only the source: each output frame is a new frame the tiles fill, not
    a copy of a blank frame (which cost a whole-plane memcpy per frame)."""
    from vs_espcn import frames, tiling

    src = noise_clip(vs.GRAY16, 40, 24, length=2)
    info = models.load(random2)
    plan = graph.tile_plan(src, info.radius, None, -1)
    net = backends.create("ort", info, plan.window)
    up = frames.PlaneUpscaler(net, 2, plan, frames.Codec.of(src.format), clamp=True)
    luma = frames.luma_clip(core.core, src, up)
    assert len(luma.dependencies) == 1
    assert (luma.dependencies[0].width, luma.dependencies[0].height) == (40, 24)
    for n in range(2):
        assert np.array_equal(plane(luma, n), plane(graph.upscale(src, model=str(random2), backend="ort"), n))
