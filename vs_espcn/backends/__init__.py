"""Inference backends: the `Backend` protocol, their option dataclasses and `create()`.

A backend turns one float32 LR tile (H, W) into its float32 HR tile (H*r, W*r). The frame
path never knows which one it talks to. Heavy runtimes (onnxruntime, tensorrt) are imported
only inside the backend modules, so `import vs_espcn.backends` stays cheap.
"""
from __future__ import annotations

import inspect
import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Union

import numpy as np
import vapoursynth as vs

if TYPE_CHECKING:
    from vs_espcn.models import ModelInfo

KINDS = ("auto", "ort", "trt")
log = logging.getLogger("vs_espcn")
_warned: set[str] = set()


class Backend(Protocol):
    """One loaded network (DESIGN.md, Backend protocol). `run` must be thread-safe (vspipe runs
    frames concurrently)."""

    scale: int

    def run(self, lr: np.ndarray) -> np.ndarray:
        """lr: float32 C-contiguous (H, W) -> float32 (H*scale, W*scale) (may be a view of a
        buffer the backend owns; valid until the next call from the same thread)."""
        ...


@dataclass(frozen=True, kw_only=True)
class OrtOptions:
    """ONNX Runtime CPU options: `threads` = intra-op threads (0 = ORT default)."""

    threads: int = 0


@dataclass(frozen=True, kw_only=True)
class TrtOptions:
    """TensorRT options, as in the Upscale arguments of DESIGN.md (workspace in MiB, 0 = default)."""

    fp16: bool = True
    device_id: int = 0
    num_streams: int = 1
    cuda_graph: bool = False
    static_shape: bool = True
    opt_level: int = 3
    workspace: int = 0
    cache_dir: str = ""


@dataclass(frozen=True, kw_only=True)
class BackendOptions:
    """Both option sets, so `kind="auto"` can pick either backend."""

    ort: OrtOptions = field(default_factory=OrtOptions)
    trt: TrtOptions = field(default_factory=TrtOptions)


AnyOptions = Union[BackendOptions, OrtOptions, TrtOptions]


def _error(problem: str, supported: str) -> vs.Error:
    """Build the plugin's user-facing error."""
    return vs.Error(f"espcn.Upscale: {problem}; {supported}")


def _split(options: AnyOptions | None) -> BackendOptions:
    """Accept a bundle or a single option set; fill the other with defaults."""
    if options is None:
        return BackendOptions()
    if isinstance(options, OrtOptions):
        return BackendOptions(ort=options)
    if isinstance(options, TrtOptions):
        return BackendOptions(trt=options)
    return options


def gpu_present() -> bool:
    """True when an NVIDIA driver seems installed (decides whether a TRT failure is worth a warning)."""
    return (os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")
            or shutil.which("nvidia-smi") is not None)


def _accepts_device_id(func) -> bool:
    """Does `func` take a `device_id` keyword (older trt_available() probed device 0 only)?"""
    try:
        return "device_id" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def trt_status(device_id: int = 0) -> tuple[bool, str]:
    """Ask `vs_espcn.backends.trt.trt_available(device_id=...)` about the CUDA device the graph
    will use; a missing/broken module means unavailable. A trt_available without the keyword is
    still called (it can only answer for its default device)."""
    try:
        from vs_espcn.backends import trt
    except ImportError as exc:
        return False, f"the TensorRT backend cannot be imported ({exc})"
    try:
        if _accepts_device_id(trt.trt_available):
            return trt.trt_available(device_id=device_id)
        return trt.trt_available()
    except Exception as exc:  # a probe must never take the host down
        return False, f"TensorRT probe failed ({type(exc).__name__}: {exc})"


def _warn_once(message: str) -> None:
    """Log `message` once per process on the vs_espcn logger (stderr)."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def _create_trt(model: "ModelInfo", shape: tuple[int, int], options: TrtOptions) -> Backend:
    """Build the TensorRT backend (its module is owned by the TensorRT engineer)."""
    from vs_espcn.backends.trt import TrtBackend

    return TrtBackend(model, shape, options)


def _create_ort(model: "ModelInfo", shape: tuple[int, int], options: OrtOptions) -> Backend:
    """Build the ONNX Runtime CPU backend."""
    from vs_espcn.backends.ort import OrtBackend

    return OrtBackend(model, shape, options)


def create(kind: str, model: "ModelInfo", shape: tuple[int, int],
           options: AnyOptions | None = None) -> Backend:
    """Create the backend `kind` ("auto" | "ort" | "trt") for tiles of `shape` (H, W).

    "auto" picks TensorRT only when it reports itself usable and its engine builds; otherwise
    ONNX Runtime, silently unless a GPU seemed present (then one warning on stderr).
    """
    opts = _split(options)
    if kind == "ort":
        return _create_ort(model, shape, opts.ort)
    if kind == "trt":
        ok, reason = trt_status(opts.trt.device_id)
        if not ok:
            raise _error(f'backend="trt" is unavailable: {reason}', 'use backend="ort" (CPU) or "auto"')
        return _create_trt(model, shape, opts.trt)
    if kind != "auto":
        raise _error(f"unknown backend {kind!r}", 'supported backends are "auto", "ort", "trt"')
    ok, reason = trt_status(opts.trt.device_id)
    if ok:
        try:
            return _create_trt(model, shape, opts.trt)
        except Exception as exc:  # fall back to the CPU rather than fail the script
            reason = f"{type(exc).__name__}: {exc}"
    if gpu_present():
        _warn_once(f"espcn.Upscale: TensorRT unusable ({reason}); falling back to ONNX Runtime CPU")
    return _create_ort(model, shape, opts.ort)
