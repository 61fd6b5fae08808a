"""vs-espcn: ESPCN super-resolution for VapourSynth (`core.espcn.Upscale(clip, 2)`).

The `espcn` namespace is autoloaded by VapourSynth from the native shim this package installs;
scripts need not import this package. `vs_espcn.upscale` is the same filter as a Python call.
Importing the package loads nothing heavy (no vapoursynth, onnxruntime, tensorrt or torch).
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "upscale"]


def __getattr__(name: str) -> Any:
    """Load `upscale` from `vs_espcn.graph` on first use."""
    if name == "upscale":
        from vs_espcn.graph import upscale

        return upscale
    raise AttributeError(f"module 'vs_espcn' has no attribute {name!r}")
