"""What TensorRT and which GPU this process can use: cheap probes that never raise.

The GPU is probed through the CUDA driver API with ctypes (libcuda / nvcuda), which needs no
Python package and creates no CUDA context. The TensorRT runtime is `tensorrt` (TensorRT 10/11)
or, failing that, `tensorrt_rtx` (TensorRT for RTX, same Python API shape); set
`VS_ESPCN_TRT_MODULE=tensorrt_rtx` to force one.
"""
from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from types import ModuleType

TRT_MODULES = ("tensorrt", "tensorrt_rtx")
MODULE_ENV = "VS_ESPCN_TRT_MODULE"
MIN_COMPUTE_CAPABILITY = (7, 5)  # Turing: the oldest GPU TensorRT 10.x/11.x and TensorRT-RTX support
INSTALL_HINT = "pip install vs-espcn[trt] (TensorRT) or vs-espcn[trt-rtx] (TensorRT for RTX)"
_CU_ATTR_CC_MAJOR, _CU_ATTR_CC_MINOR = 75, 76


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as the driver reports it."""

    index: int
    name: str
    compute_capability: tuple[int, int]

    @property
    def cc_label(self) -> str:
        """`8.6` style."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def _libcuda() -> ctypes.CDLL:
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    return ctypes.CDLL(name)


@functools.lru_cache(maxsize=None)
def probe_gpu(device_id: int = 0) -> tuple[GpuInfo | None, str]:
    """(GpuInfo, "") for CUDA device `device_id`, or (None, reason). Never raises."""
    try:
        cu = _libcuda()
    except OSError:
        return None, "no CUDA device (NVIDIA driver library libcuda not found; nvidia-smi / cudaGetDeviceCount)"
    try:
        if cu.cuInit(0) != 0:
            return None, "no CUDA device (cuInit failed: no NVIDIA GPU or driver not loaded)"
        count = ctypes.c_int(0)
        if cu.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
            return None, "no CUDA device (cuDeviceGetCount = 0)"
        if not 0 <= device_id < count.value:
            return None, f"device_id={device_id} out of range: {count.value} CUDA device(s)"
        dev = ctypes.c_int(0)
        cu.cuDeviceGet(ctypes.byref(dev), device_id)
        buf = ctypes.create_string_buffer(256)
        cu.cuDeviceGetName(buf, 256, dev)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        cu.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, dev)
        cu.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, dev)
    except (OSError, AttributeError) as e:  # pragma: no cover - broken driver install
        return None, f"no CUDA device (driver query failed: {e})"
    return GpuInfo(device_id, buf.value.decode(errors="replace"), (major.value, minor.value)), ""


def module_candidates() -> tuple[str, ...]:
    """TensorRT module names to try, in order (the env var narrows it to one)."""
    forced = os.environ.get(MODULE_ENV, "").strip()
    return (forced,) if forced else TRT_MODULES


@functools.lru_cache(maxsize=None)
def _import_first(names: tuple[str, ...]) -> tuple[ModuleType | None, str]:
    errors = []
    for name in names:
        try:
            return importlib.import_module(name), ""
        except Exception as e:  # ImportError, or a wheel whose native libs fail to load
            errors.append(f"{name}: {e}")
    return None, f"tensorrt not installed ({'; '.join(errors)}): {INSTALL_HINT}"


def import_trt() -> tuple[ModuleType | None, str]:
    """(the TensorRT module, "") or (None, reason)."""
    return _import_first(module_candidates())


def package_of(trt: ModuleType) -> tuple[str, str]:
    """("tensorrt" | "tensorrt_rtx", version) of an imported TensorRT module."""
    return trt.__name__.split(".")[0], str(getattr(trt, "__version__", "unknown"))


def cuda_python_available() -> tuple[bool, str]:
    """(True, "") when NVIDIA's cuda-python runtime bindings are installed (not imported here)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            if importlib.util.find_spec(name) is not None:
                return True, ""
        except (ImportError, ValueError):
            continue
    return False, f"cuda-python not installed (needed for CUDA streams and buffers): {INSTALL_HINT}"


def trt_available(*, device_id: int = 0) -> tuple[bool, str]:
    """True when CUDA device `device_id` exists, has compute capability >= 7.5, and cuda-python
    and a TensorRT runtime import; else False and the reason (naming the device). Cheap (cached)
    and never raises."""
    try:
        gpu, why = probe_gpu(int(device_id))
        if gpu is None:
            return False, why
        if gpu.compute_capability < MIN_COMPUTE_CAPABILITY:
            return False, (f"GPU too old: device {gpu.index} ({gpu.name}) has compute capability {gpu.cc_label}, TensorRT needs "
                           f">= {MIN_COMPUTE_CAPABILITY[0]}.{MIN_COMPUTE_CAPABILITY[1]}")
        ok, why = cuda_python_available()
        if not ok:
            return False, why
        trt, why = import_trt()
        if trt is None:
            return False, why
        return True, ""
    except Exception as e:  # pragma: no cover - belt and braces: a probe must never crash the host
        return False, f"TensorRT probe failed: {e}"
