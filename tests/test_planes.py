"""The shim's plane kernels equal numpy's arithmetic byte for byte (the frame path's integer planes use them)."""
from __future__ import annotations

import numpy as np
import pytest

from vs_espcn import planes


def _decode_ref(plane: np.ndarray, divisor: float, offset: float, pad: int) -> np.ndarray:
    values = np.divide(np.pad(plane, pad, mode="symmetric"), np.float32(divisor), dtype=np.float32)
    return np.subtract(values, np.float32(offset), dtype=np.float32)


def _encode_ref(values, offset, divisor, lo, hi, dtype) -> np.ndarray:
    v = np.multiply(np.add(values, np.float32(offset)), np.float32(divisor))
    return np.rint(np.clip(v, np.float32(lo), np.float32(hi))).astype(dtype)


@pytest.mark.parametrize("dtype,divisor", [(np.uint8, 255.0), (np.uint16, 1020.0), (np.uint16, 65280.0)])
@pytest.mark.parametrize("pad,offset", [(0, 0.0), (4, 0.5), (9, 0.0)])
def test_decode_is_numpys_symmetric_pad_divide_shift(core, dtype, divisor, pad, offset):
    rng = np.random.default_rng(pad)
    big = rng.integers(0, np.iinfo(dtype).max, (23, 40), dtype=dtype)
    plane = big[2:19, 3:34]  # a strided view, as a frame plane is
    got = planes.decode(plane, divisor, offset, pad)
    assert got.shape == (17 + 2 * pad, 31 + 2 * pad) and got.dtype == np.float32
    assert np.array_equal(got, _decode_ref(plane, divisor, offset, pad))


def test_decode_pads_tiny_planes_like_numpy(core):
    plane = np.array([[7, 9], [11, 200]], np.uint8)
    assert np.array_equal(planes.decode(plane, 255.0, 0.0, 5), _decode_ref(plane, 255.0, 0.0, 5))


@pytest.mark.parametrize("dtype,divisor,lo,hi", [(np.uint8, 255.0, 0, 255), (np.uint8, 255.0, 30, 200),
                                                 (np.uint16, 1020.0, 0, 1023), (np.uint16, 65280.0, 0, 65535)])
def test_encode_is_numpys_shift_multiply_clip_rint(core, dtype, divisor, lo, hi):
    rng = np.random.default_rng(1)
    values = rng.uniform(-0.7, 0.8, (30, 50)).astype(np.float32)
    dst_big = np.zeros((34, 60), dtype)
    dst = dst_big[2:32, 5:55]
    planes.encode(values[:, :], dst, 0.5, divisor, lo, hi)
    assert np.array_equal(dst, _encode_ref(values, 0.5, divisor, lo, hi, dtype))
    assert dst_big[0].max() == 0 and dst_big[:, :5].max() == 0  # nothing outside the view is touched


def test_encode_rounds_ties_to_even(core):
    values = np.array([[0.25, 0.75, 1.25, 1.75, 100.25]], np.float32)  # x2 -> 0.5, 1.5, 2.5, 3.5, 200.5
    dst = np.zeros((1, 5), np.uint8)
    planes.encode(values, dst, 0.0, 2.0, 0, 255)
    assert dst.tolist() == [[0, 2, 2, 4, 200]] == np.rint(values * 2).astype(np.uint8).tolist()


def test_kernels_refuse_what_they_cannot_do(core):
    with pytest.raises(ValueError, match="espcn_encode refused"):
        planes.encode(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.uint8), 0.0, 255.0, -1.0, 255.0)
    with pytest.raises(ValueError, match="espcn_decode refused"):
        planes.decode(np.zeros((2, 2), np.uint32), 255.0, 0.0, 1)
