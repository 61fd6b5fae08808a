"""Helpers shared by the plugin tests (no tests here): deterministic clips, ONNX fixtures,
and the reference computation "onnxruntime directly on the Y plane"."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

from onnx_models import make_espcn_onnx

core = vs.core


def fmt_of(family: int, sample_type: int, bits: int, ssw: int = 0, ssh: int = 0) -> vs.VideoFormat:
    """A registered VapourSynth format."""
    return core.query_video_format(family, sample_type, bits, ssw, ssh)


def noise_clip(fmt: vs.VideoFormat, width: int, height: int, length: int = 2, seed: int = 0,
               props: dict | None = None) -> vs.VideoNode:
    """Clip of seeded noise over the full sample range; frame n is the same on every request."""
    blank = core.std.BlankClip(format=fmt, width=width, height=height, length=length)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        rng = np.random.default_rng(seed * 1000 + n)
        for i in range(out.format.num_planes):
            a = np.asarray(out[i])
            if out.format.sample_type == vs.INTEGER:
                a[...] = rng.integers(0, 1 << out.format.bits_per_sample, a.shape)
            else:
                a[...] = rng.random(a.shape)
        for k, v in (props or {}).items():
            out.props[k] = v
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def plane(clip: vs.VideoNode, n: int = 0, p: int = 0) -> np.ndarray:
    """A copy of plane p of frame n."""
    return np.array(clip.get_frame(n)[p])


def reference_net(model: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime on the (H, W) float32 plane `x` mirrored outward by the model's receptive radius
    (numpy "symmetric", the plugin's border), cropped back to (rH, rW)."""
    import onnxruntime as ort

    from vs_espcn import models

    info = models.load(model)
    p, r = info.radius, info.scale
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"lr": np.pad(x, p, mode="symmetric")[None, None]})[0][0, 0]
    return out[p * r : out.shape[0] - p * r, p * r : out.shape[1] - p * r]


def mirror_clip(clip: vs.VideoNode, pad: int, zero: bool = False) -> vs.VideoNode:
    """A one-plane clip with every frame's plane extended by `pad` pixels per side: mirrored, edge pixel
    repeated (numpy "symmetric", the plugin's border), or zeros with `zero`."""
    blank = vs.core.std.BlankClip(clip, width=clip.width + 2 * pad, height=clip.height + 2 * pad)

    def extend(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = blank.get_frame(0).copy()
        np.asarray(out[0])[:] = np.pad(np.asarray(f[0]), pad, mode="constant" if zero else "symmetric")
        return out

    return blank.std.ModifyFrame(clip, extend)


def reference_y(model: Path, y: np.ndarray, clamp: bool = True) -> np.ndarray:
    """Float plane: run the ONNX on it with onnxruntime directly (float32 result), limited to the
    plane's [min, max] with `clamp` (the plugin's default)."""
    assert y.dtype.kind == "f", "use reference_y_int for integer planes"
    out = reference_net(model, y.astype(np.float32))
    return np.clip(out, y.min(), y.max()).astype(np.float32) if clamp else out


def reference_y_int(model: Path, y: np.ndarray, bits: int, clamp: bool = True) -> np.ndarray:
    """Integer plane: code / (255 * 2**(bits-8)) -> network -> round(out * ...) limited to the plane's
    [min, max] with `clamp` (the plugin's default), else to the format's range."""
    div = np.float32(255 * 2 ** (bits - 8))
    out = np.rint(reference_net(model, y.astype(np.float32) / div) * div)
    lo, hi = (y.min(), y.max()) if clamp else (0, 2 ** bits - 1)
    return np.clip(out, lo, hi).astype(y.dtype)


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory) -> Path:
    """A directory holding the test ONNX models."""
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="session")
def nearest2(onnx_dir) -> Path:
    """x2 ESPCN that is an exact nearest-neighbour upscaler (known answer)."""
    return make_espcn_onnx(onnx_dir / "nearest2.onnx", 2, "nearest", activation="relu")


@pytest.fixture(scope="session")
def random2(onnx_dir) -> Path:
    """x2 ESPCN with seeded random weights (radius 4)."""
    return make_espcn_onnx(onnx_dir / "random2.onnx", 2, "random", seed=1)


@pytest.fixture(scope="session")
def random3(onnx_dir) -> Path:
    """x3 ESPCN with seeded random weights."""
    return make_espcn_onnx(onnx_dir / "random3.onnx", 3, "random", seed=2)
