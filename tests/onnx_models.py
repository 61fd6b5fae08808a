"""Small ESPCN-shaped ONNX models built in the tests (no torch needed).

The factory lives in the package (`vs_espcn.onnx_factory`, shared with `python -m vs_espcn bench`);
this module re-exports it because many tests import `make_espcn_onnx` from here.
`weights="nearest"` with `activation="relu"` is an exact nearest-neighbour upscaler for inputs >= 0
(the known-answer model); `weights="random"` gives a seeded random network.
"""
from __future__ import annotations

from vs_espcn.onnx_factory import espcn_model, make_espcn_onnx

__all__ = ["espcn_model", "make_espcn_onnx"]
