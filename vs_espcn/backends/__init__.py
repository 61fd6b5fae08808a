"""Inference backends: the `Backend` protocol, their option dataclasses and `create()`.

A backend turns one float32 LR tile (H, W) into its float32 HR tile (H*r, W*r). The frame
path never knows which one it talks to. Heavy runtimes (onnxruntime, openvino, tensorrt) are
imported only inside the backend modules, so `import vs_espcn.backends` stays cheap.

`create("auto", ...)` tries TensorRT (a usable NVIDIA GPU), then the fastest CPU path: OpenVINO where it
runs a reduced precision (bf16 on a CPU that has it, or int8), else ONNX Runtime fp32 (faster than
OpenVINO's fp32 where both run fp32: 1.4x on an AVX2-only Zen 3, 0.94-1.03x on Zen 5), each with the other as
fallback; the first that is usable and runs the asked precision is taken, and each fallback is logged
once per process on stderr with its reason (skipping TensorRT on a machine with no NVIDIA driver is no
fallback, so it is not logged).
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Union

import numpy as np
import vapoursynth as vs

from vs_espcn import precision

if TYPE_CHECKING:
    from vs_espcn.models import ModelInfo

KINDS = ("auto", "ort", "ov", "trt")
AUTO_ORDER = ("trt", "ov", "ort")  # where OpenVINO runs a reduced precision
FP32_ORDER = ("trt", "ort", "ov")  # where the CPU runs fp32 either way: ONNX Runtime measured faster
log = logging.getLogger("vs_espcn")
_warned: set[str] = set()


class Backend(Protocol):
    """One loaded network (DESIGN.md, Backend protocol). `run` must be thread-safe (vspipe runs
    frames concurrently)."""

    scale: int
    offset: float  # optional (0.0 when absent): run takes values minus offset and returns them minus offset
    # optional: lease() -> context manager yielding a run(lr) whose output is a view valid inside the block
    # (the frame path leases once per frame; OpenVINO lends a request's buffers that way)

    def run(self, lr: np.ndarray) -> np.ndarray:
        """lr: float32 C-contiguous (H, W) -> float32 (H*scale, W*scale) (may be a view of a
        buffer the backend owns; valid until the next call from the same thread)."""
        ...


@dataclass(frozen=True, kw_only=True)
class OrtOptions:
    """ONNX Runtime CPU options: `threads` in all (0 = the physical cores this process may use) for the
    `streams` frames in flight, which share one session (`intra_threads`)."""

    threads: int = 0
    streams: int = 1

    def intra_threads(self) -> int:
        """The shared session's intra-op threads: each running frame's own thread joins the session's pool
        of intra - 1 threads, so `streams` frames at once use `threads` in all (at least one each).
        Measured on 2 cores: 2 frames x 1 thread gave 1.14x 1 frame x 2. One frame and threads=0 keep
        ORT's own default (0: every physical core, pinned)."""
        frames = max(1, self.streams)
        if not self.threads and frames == 1:
            return 0
        return max(1, (self.threads or physical_cores()) - frames + 1)


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyperthread siblings count once)."""
    cpus = os.sched_getaffinity(0)
    cores = set()
    for cpu in cpus:
        try:
            cores.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip())
        except OSError:
            return len(cpus)
    return max(1, len(cores))


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
class OvOptions:
    """OpenVINO options: `threads` in all (0 = OpenVINO's default, every core), `streams` = infer requests
    run at once (the frames in flight), `precision` = "fp32" | "bf16" | "int8" once resolved (`create`
    sets it from `BackendOptions.precision`; int8 = a QDQ model whose other layers run in bf16/fp32)."""

    threads: int = 0
    streams: int = 1
    precision: str = "fp32"


@dataclass(frozen=True, kw_only=True)
class BackendOptions:
    """Every option set plus the `precision` argument, so `kind="auto"` can pick any backend."""

    precision: str = "auto"
    ort: OrtOptions = field(default_factory=OrtOptions)
    ov: OvOptions = field(default_factory=OvOptions)
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


def _create_ov(model: "ModelInfo", shape: tuple[int, int], options: OvOptions) -> Backend:
    """Build the OpenVINO CPU backend (`options.precision` resolved)."""
    from vs_espcn.backends.ov import OvBackend

    return OvBackend(model, shape, options)


def _create_ort(model: "ModelInfo", shape: tuple[int, int], options: OrtOptions) -> Backend:
    """Build the ONNX Runtime CPU backend."""
    from vs_espcn.backends.ort import OrtBackend

    return OrtBackend(model, shape, options)


def ov_status() -> tuple[bool, str]:
    """Is OpenVINO importable (with the reason when not)?"""
    from vs_espcn.backends import ov

    return ov.available()


def ort_status() -> tuple[bool, str]:
    """Is onnxruntime installed (with the reason when not)? Found without importing it."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return False, "onnxruntime is not installed (pip install onnxruntime)"
    return True, ""


def usable(kind: str, opts: BackendOptions) -> tuple[bool, str]:
    """Can backend `kind` run here at all (before any precision question)?"""
    if kind == "trt":
        return trt_status(opts.trt.device_id)
    if kind == "ov":
        return ov_status()
    return ort_status()


def auto_order(prec: str) -> tuple[str, ...]:
    """The order `create("auto")` tries backends in for the precision argument `prec` (module doc)."""
    reduced = prec in ("bf16", "int8") or (prec == "auto" and precision.cpu_can("bf16"))
    return AUTO_ORDER if reduced else FP32_ORDER


def _make(kind: str, model: "ModelInfo", shape: tuple[int, int], opts: BackendOptions) -> Backend:
    """Create backend `kind` at the precision it resolves `opts.precision` to (vs.Error if it cannot)."""
    prec = precision.resolve(kind, opts.precision, fp16=opts.trt.fp16)
    if kind == "trt":
        return _create_trt(model, shape, dataclasses.replace(opts.trt, fp16=prec == "fp16"))
    if kind == "ov":
        return _create_ov(model, shape, dataclasses.replace(opts.ov, precision=prec))
    return _create_ort(model, shape, opts.ort)


def create(kind: str, model: "ModelInfo", shape: tuple[int, int],
           options: AnyOptions | None = None) -> Backend:
    """Create the backend `kind` ("auto" | "ort" | "ov" | "trt") for tiles of `shape` (H, W).

    An explicit kind that is unusable or cannot run the asked precision raises `vs.Error`. "auto" takes
    the first backend of `auto_order` that works, logging each fallback once (module doc).
    """
    opts = _split(options)
    if kind not in KINDS:
        raise _error(f"unknown backend {kind!r}", 'supported backends are "auto", "ort", "ov", "trt"')
    if kind != "auto":
        ok, reason = usable(kind, opts)
        if not ok:
            others = ", ".join(f'"{k}"' for k in KINDS if k != kind)
            raise _error(f'backend="{kind}" is unavailable: {reason}', f"use backend={others}")
        return _make(kind, model, shape, opts)
    reasons = []
    for candidate in auto_order(opts.precision):
        ok, reason = usable(candidate, opts)
        if ok and opts.precision != "auto":
            reason = precision.unavailable(candidate, opts.precision) or ""
            ok = not reason
        if ok:
            try:
                net = _make(candidate, model, shape, opts)
            except Exception as exc:  # fall back to the next backend rather than fail the script
                reason = f"{type(exc).__name__}: {exc}"
            else:
                for skipped, why in reasons:
                    if skipped != "trt" or gpu_present():
                        _warn_once(f"espcn.Upscale: {NAMES[skipped]} unusable ({why}); using {NAMES[candidate]}")
                return net
        reasons.append((candidate, reason))
    raise _error(f'no backend can run precision="{opts.precision}" here ('
                 + "; ".join(f"{NAMES[k]}: {why}" for k, why in reasons) + ")",
                 'use precision="auto" or "fp32"')


NAMES = {"trt": "TensorRT", "ov": "OpenVINO", "ort": "ONNX Runtime"}
