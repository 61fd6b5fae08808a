"""vs_espcn.jetpack.ESPCN: a vskernels.Scaler whose luma is core.espcn.Upscale and chroma a kernel."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

vs = pytest.importorskip("vapoursynth")

REPO = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_import_vs_espcn_does_not_import_vskernels():
    res = _run("import sys, vs_espcn; print(sorted(m for m in sys.modules if m.startswith(('vskernels', 'vstools'))))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_without_vsjetpack_the_import_error_is_one_sentence():
    # a None entry in sys.modules makes `import vskernels` fail as if it were not installed
    res = _run("import sys; sys.modules['vskernels'] = None\n"
               "try:\n    from vs_espcn.jetpack import ESPCN\n"
               "except ImportError as e:\n    print(type(e).__name__, '|', e)\nelse:\n    print('imported')")
    assert res.returncode == 0, res.stderr
    kind, message = res.stdout.strip().split(" | ")
    assert kind == "ImportError" and "\n" not in message
    assert "pip install vsjetpack" in message


try:
    from vs_espcn import jetpack
    from vskernels import Bilinear, Catrom
except ImportError as exc:  # the tests above still run; those below say why they cannot
    jetpack, WHY = None, f"vsjetpack is not installed (the dev extra has it): {exc}"
else:
    WHY = "" if hasattr(vs.core, "resize2") else ("vskernels' kernels need the resize2 plugin "
                                                  "(pip install vapoursynth-resize2; the dev extra has it)")
needs_jetpack = pytest.mark.skipif(bool(WHY), reason=WHY)


def noise(fmt: int = vs.YUV420P8, width: int = 64, height: int = 48, length: int = 2) -> vs.VideoNode:
    """A clip of seeded limited-range noise per frame (the same frame n whoever asks for it, in any order)."""
    blank = vs.core.std.BlankClip(format=fmt, width=width, height=height, length=length)
    blank = blank.std.SetFrameProps(_Matrix=1, _ChromaLocation=0, user_tag=7)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        rng = np.random.default_rng(n)
        for p in range(out.format.num_planes):
            a = np.asarray(out[p])
            if out.format.sample_type == vs.FLOAT:
                a[...] = rng.random(a.shape, dtype=np.float32) * (1.0 if p == 0 else 0.5) - (0 if p == 0 else 0.25)
            else:
                shift = out.format.bits_per_sample - 8
                a[...] = rng.integers(16 << shift, (235 << shift) + 1, a.shape)
        return out

    return blank.std.ModifyFrame(blank, fill)


def plane(clip: vs.VideoNode, p: int, n: int = 0) -> np.ndarray:
    return np.array(clip.get_frame(n)[p])


def luma(clip: vs.VideoNode) -> vs.VideoNode:
    return clip if clip.format.color_family == vs.GRAY else clip.std.ShufflePlanes(0, vs.GRAY)


@needs_jetpack
@pytest.mark.parametrize("fmt", [vs.YUV420P8, vs.YUV444P16, vs.YUV422P10, vs.GRAY8, vs.YUV420PS])
def test_2x_luma_equals_upscale_bit_exactly_and_chroma_is_the_kernel(core, fmt):
    clip = noise(fmt)
    out = jetpack.ESPCN().scale(clip, 128, 96)
    ref = core.espcn.Upscale(clip, 2)
    assert (out.width, out.height, out.format.id) == (128, 96, clip.format.id)
    for n in range(clip.num_frames):
        assert np.array_equal(plane(out, 0, n), plane(ref, 0, n))
    if clip.format.num_planes == 3:
        kernel = Catrom().scale(clip, 128, 96)
        for p in (1, 2):
            assert np.array_equal(plane(out, p), plane(kernel, p))


@needs_jetpack
def test_supersample_is_scale_by_the_factor(core):
    clip = noise()
    for factor in (2, 3, 4):
        sup = jetpack.ESPCN().supersample(clip, factor)
        ref = core.espcn.Upscale(clip, factor)
        assert (sup.width, sup.height) == (64 * factor, 48 * factor)
        assert np.array_equal(plane(sup, 0), plane(ref, 0))


@needs_jetpack
@pytest.mark.parametrize("model,target,net", [
    ("", (100, 80), 2),     # 1.56x x 1.67x -> x2, then down
    ("", (150, 110), 3),    # past 2x on both axes -> x3
    ("", (160, 100), 3),    # x2 reaches the height but not the width -> x3
    ("", (300, 200), 4),    # past 4x: the largest network, then the kernel up
    ("anime", (150, 110), 2),  # anime has x2 only
])
def test_other_sizes_take_the_next_larger_network_then_the_kernel(core, model, target, net):
    clip = noise()
    out = jetpack.ESPCN(model=model).scale(clip, *target)
    assert (out.width, out.height) == target
    ref = Catrom().scale(core.espcn.Upscale(luma(clip), net, model=model), *target)
    assert np.array_equal(plane(out, 0), plane(ref, 0))
    # and it is not what the kernel alone gives (the network did run)
    assert not np.array_equal(plane(out, 0), plane(Catrom().scale(clip, *target), 0))


@needs_jetpack
def test_a_downscale_is_the_kernel_alone():
    clip = noise()
    out = jetpack.ESPCN().scale(clip, 32, 24)
    assert np.array_equal(plane(out, 0), plane(Catrom().scale(clip, 32, 24), 0))


@needs_jetpack
def test_kernel_and_upscale_arguments_are_used(core):
    clip = noise()
    out = jetpack.ESPCN(kernel=Bilinear, clamp=0).scale(clip, 100, 80)
    ref = Bilinear().scale(core.espcn.Upscale(luma(clip), 2, clamp=0), 100, 80)
    assert np.array_equal(plane(out, 0), plane(ref, 0))
    assert np.array_equal(plane(out, 1), plane(Bilinear().scale(clip, 100, 80), 1))
    clamped = jetpack.ESPCN(kernel=Bilinear).scale(clip, 100, 80)
    assert not np.array_equal(plane(out, 0), plane(clamped, 0))


@needs_jetpack
def test_frame_props_are_kept():
    props = jetpack.ESPCN().scale(noise(), 128, 96).get_frame(0).props
    assert props["_Matrix"] == 1 and props["_ChromaLocation"] == 0 and props["user_tag"] == 7


@needs_jetpack
def test_bad_input_is_the_plugins_error():
    rgb = vs.core.std.BlankClip(format=vs.RGB24, width=64, height=48)
    with pytest.raises(vs.Error, match="espcn.Upscale"):
        jetpack.ESPCN().scale(rgb, 128, 96)
    with pytest.raises(vs.Error, match="espcn.Upscale"):
        jetpack.ESPCN(model=str(REPO / "missing.onnx"))


@needs_jetpack
@pytest.mark.parametrize("src,dst,scales,want", [
    ((64, 48), (128, 96), (2, 3, 4), 2),
    ((64, 48), (192, 144), (2, 3, 4), 3),
    ((64, 48), (128, 97), (2, 3, 4), 3),
    ((64, 48), (64, 48), (2, 3, 4), None),
    ((64, 48), (65, 40), (2,), 2),
    ((64, 48), (1000, 1000), (2, 3, 4), 4),
])
def test_pick_scale(src, dst, scales, want):
    assert jetpack.pick_scale(src, dst, scales) == want
