"""Per-frame path: Y plane -> float32 (Y convention) -> mirrored border -> tiles -> backend -> clamp -> Y plane.

The plane is read through numpy views of the VapourSynth frame (`np.asarray(frame[0])`), scaled
into one float32 buffer, extended by the plan's `pad` mirrored pixels per side (so the network's
zero padding never touches an output pixel), cut into the tiles of the plan and each tile's core
is written straight into the output frame. The output clip is the shim's parallel filter
`espcn.Network`, which calls `upscale_frame` for up to `inflight` frames at once (the backend
releases the GIL while the network runs); one backend per graph, thread-safe (the callback keeps
no state between frames), so the output never depends on how many frames are in flight. Every few
seconds the callback hands the heap's free memory back to the OS (`heap.heap_trimmer`), so RSS stays flat
over long encodes.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np
import vapoursynth as vs

from vs_espcn import tiling
from vs_espcn.heap import heap_trimmer
from vs_espcn.backends import Backend

log = logging.getLogger("vs_espcn")

# The picture's edge is extended by mirroring, edge pixel repeated (numpy "symmetric"): the `border`
# convention of the trainer (ONNX metadata), which measured it above zero padding on every shipped model.
BORDER = "symmetric"


@dataclass(frozen=True)
class Codec:
    """How plane samples map to network values (DESIGN.md, Y convention)."""

    integer: bool
    divisor: float  # code / divisor -> network value (1.0 for float planes)
    maxval: int  # clamp bound for integer planes

    @classmethod
    def of(cls, fmt: vs.VideoFormat) -> "Codec":
        """Codec of a VapourSynth format: int planes use code / (255 * 2**(bits - 8))."""
        if fmt.sample_type == vs.INTEGER:
            return cls(True, 255.0 * 2 ** (fmt.bits_per_sample - 8), (1 << fmt.bits_per_sample) - 1)
        return cls(False, 1.0, 0)

    def decode(self, plane: np.ndarray, pad: int = 0, offset: float = 0.0) -> np.ndarray:
        """Plane samples -> C-contiguous float32 network values minus `offset`, the plane mirrored
        outward by `pad` pixels (BORDER), in the plane's own sample type first (an 8-bit pad moves a
        quarter of the bytes)."""
        values = np.pad(plane, pad, mode=BORDER) if pad else plane
        if self.integer:
            out = np.divide(values, np.float32(self.divisor), dtype=np.float32)
            return np.subtract(out, np.float32(offset), out=out) if offset else out
        if offset:
            return np.subtract(values, np.float32(offset), dtype=np.float32)
        if values.dtype == np.float32 and values.flags.c_contiguous:
            return values
        return np.array(values, dtype=np.float32, order="C")

    def bounds(self, plane: np.ndarray, clamp: bool) -> tuple[float | None, float | None]:
        """Output limits in plane samples (DESIGN.md, Output range). Integer: the source plane's
        [min, max] with `clamp`, always within the format's [0, maxval] (a plane holding codes above its
        depth must not pass them on). Float: the [min, max] of the plane's non-NaN samples with `clamp`
        (one NaN pixel must not spoil the frame's limits), else unlimited; an all-NaN plane is unlimited."""
        if self.integer:
            if not clamp:
                return 0, self.maxval
            hi = min(int(plane.max()), self.maxval)
            return min(int(plane.min()), hi), hi
        if not clamp:
            return None, None
        lo, hi = float(np.fmin.reduce(plane, axis=None)), float(np.fmax.reduce(plane, axis=None))
        return (None, None) if np.isnan(lo) else (lo, hi)

    def encode(self, out: np.ndarray, dst: np.ndarray, lo: float | None, hi: float | None,
               offset: float = 0.0) -> None:
        """Network values minus `offset` -> plane samples in `dst`, limited to [lo, hi] (samples; None =
        open); `out` may be overwritten."""
        values = np.add(out, np.float32(offset), out=out if out.flags.writeable else None) if offset else out
        if self.integer:
            tmp = np.multiply(values, np.float32(self.divisor), out=values if values.flags.writeable else None)
            np.clip(tmp, lo, hi, out=tmp)
            np.rint(tmp, out=dst, casting="unsafe")  # round in float, store as the plane's int type
        elif lo is None:
            np.copyto(dst, values, casting="same_kind")
        else:
            np.clip(values, np.float32(lo), np.float32(hi), out=dst, casting="same_kind")


class PlaneUpscaler:
    """Upscales one (H, W) plane with a backend, tile by tile, into a preallocated output."""

    def __init__(self, backend: Backend, scale: int, plan: tiling.Plan, codec: Codec, *, clamp: bool) -> None:
        """`plan` is the graph's tiling (the backend was created for `plan.window`). With `clamp` the
        output is limited to the source plane's [min, max] (DESIGN.md, Output range)."""
        self.backend, self.scale, self.codec, self.clamp = backend, scale, codec, clamp
        self.window, self.tiles, self.pad = plan.window, plan.tiles, plan.pad
        self.out_window = (plan.window[0] * scale, plan.window[1] * scale)
        self.offset = float(getattr(backend, "offset", 0.0))  # the backend's input/output shift (centring)

    def process(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Upscale `src` (H, W) into `dst` (H*r, W*r); both may be strided frame views."""
        p, r = self.pad, self.scale
        lo, hi = self.codec.bounds(src, self.clamp)
        wh, ww = self.window
        offset = self.offset
        lr = self.codec.decode(src, p, offset)  # one float32 plane per frame, mirrored by the pad
        lease = getattr(self.backend, "lease", None)  # a backend may lend its buffers for the frame
        with lease() if lease else contextlib.nullcontext(self.backend.run) as run:
            for t in self.tiles:  # a window that is the whole (contiguous) plane is passed without a copy
                win = np.ascontiguousarray(lr[t.y.win:t.y.win + wh, t.x.win:t.x.win + ww])
                hr = run(win)
                if hr.shape != self.out_window:  # a model misbehaving at this size: never a scrambled frame
                    raise ValueError(f"the model maps a {ww}x{wh} tile to shape {hr.shape}, expected "
                                     f"{self.out_window} (scale {r})")
                oy, ox = (t.y.core0 + p - t.y.win) * r, (t.x.core0 + p - t.x.win) * r
                ch, cw = (t.y.core1 - t.y.core0) * r, (t.x.core1 - t.x.core0) * r
                self.codec.encode(hr[oy:oy + ch, ox:ox + cw],
                                  dst[t.y.core0 * r:t.y.core1 * r, t.x.core0 * r:t.x.core1 * r], lo, hi, offset)


def frame_error(n: int, exc: Exception) -> vs.Error:
    """The user-facing error for a failure while computing output frame `n`."""
    text = str(exc).removeprefix("espcn.Upscale: ")
    kind = "" if isinstance(exc, vs.Error) else f"{type(exc).__name__}: "
    return vs.Error(f"espcn.Upscale: frame {n}: {kind}{text}")


def gray_format(core: vs.Core, fmt: vs.VideoFormat) -> vs.VideoFormat:
    """The GRAY format with the same sample type and depth as `fmt` (the Y plane's format)."""
    return core.query_video_format(vs.GRAY, fmt.sample_type, fmt.bits_per_sample, 0, 0)


def luma_clip(core: vs.Core, clip: vs.VideoNode, upscaler: PlaneUpscaler, inflight: int = 1) -> vs.VideoNode:
    """GRAY clip of clip.width*r x clip.height*r whose frames are the upscaled Y planes.

    `core` is the graph's concrete core (`vs.core.core` when the graph is built). The shim's
    `espcn.Network` (fmParallel) computes up to `inflight` frames at once. Each output frame is a
    fresh `core.create_video_frame` (uninitialised: the tiles write every pixel).
    """
    r = upscaler.scale
    fmt = gray_format(core, clip.format)
    width, height = clip.width * r, clip.height * r
    process, new_frame, trim = upscaler.process, core.create_video_frame, heap_trimmer()

    def upscale_frame(n: int, f: vs.VideoFrame) -> vs.VideoFrame | dict[str, str]:
        """Network callback: a new Y frame, written by the network from the source's Y. Any failure is
        returned as {"error": "espcn.Upscale: frame n: ..."} (the shim raises it as it is)."""
        try:
            out = new_frame(fmt, width, height)
            process(np.asarray(f[0]), np.asarray(out[0]))
            trim()  # glibc keeps freed frame buffers; without this RSS climbs ~0.3 MB a frame
            return out
        except Exception as exc:
            log.debug("espcn.Upscale: frame %d failed", n, exc_info=True)
            return {"error": str(frame_error(n, exc))}

    return core.espcn.Network(clip, width=width, height=height, func=upscale_frame, inflight=inflight)
