"""The shim's plane kernels (`_shim/planes.c`) through ctypes: integer plane <-> float32 network values.

numpy needs four passes per direction (mirror pad, divide, shift; add, multiply, clip, round) and holds
the GIL between them; the C kernels do one pass each without the GIL, which matters because the frame
path's own work is what the network's next frame waits for. They compute the same float32 operations in
the same order, so the bytes equal numpy's (tests/test_planes.py).
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

_P, _F, _I, _S = ctypes.c_void_p, ctypes.c_float, ctypes.c_int, ctypes.c_ssize_t


@functools.cache
def library() -> ctypes.CDLL:
    """The loaded shim (VapourSynth has it open already; this only binds its two kernels)."""
    import vapoursynth as vs

    lib = ctypes.CDLL(vs.core.espcn.plugin_path)
    lib.espcn_decode.argtypes = [_P, _S, _I, _I, _I, _F, _F, _I, _P]
    lib.espcn_encode.argtypes = [_P, _S, _I, _I, _F, _F, _F, _F, _P, _S, _I]
    lib.espcn_decode.restype = lib.espcn_encode.restype = _I
    return lib


def decode(plane: np.ndarray, divisor: float, offset: float, pad: int) -> np.ndarray:
    """uint8/uint16 (H, W) plane (rows may be strided) -> new float32 (H+2pad, W+2pad): the plane mirrored
    by `pad` (numpy "symmetric"), each sample code / divisor - offset."""
    h, w = plane.shape
    if plane.strides[1] != plane.itemsize:
        plane = np.ascontiguousarray(plane)
    out = np.empty((h + 2 * pad, w + 2 * pad), np.float32)
    rc = library().espcn_decode(plane.ctypes.data, plane.strides[0], w, h, plane.itemsize, divisor, offset,
                                pad, out.ctypes.data)
    if rc:
        raise ValueError(f"espcn_decode refused a {plane.dtype} {w}x{h} plane (pad {pad})")
    return out


def encode(values: np.ndarray, dst: np.ndarray, offset: float, divisor: float, lo: float, hi: float) -> None:
    """float32 (H, W) view -> `dst` uint8/uint16 (H, W) view: rint(clip((v + offset) * divisor, lo, hi))."""
    h, w = values.shape
    if values.dtype != np.float32 or values.strides[1] != 4:
        values = np.ascontiguousarray(values, np.float32)
    if dst.strides[1] != dst.itemsize or dst.shape != (h, w):
        raise ValueError(f"espcn_encode needs a row-contiguous {w}x{h} destination, got {dst.shape}")
    rc = library().espcn_encode(values.ctypes.data, values.strides[0] // 4, w, h, offset, divisor, lo, hi,
                                dst.ctypes.data, dst.strides[0], dst.itemsize)
    if rc:
        raise ValueError(f"espcn_encode refused a {w}x{h} tile into {dst.dtype} (limits {lo}..{hi})")
