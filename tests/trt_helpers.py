"""Shared helpers of the TensorRT tests: which shipped models exist, whether a builder starts,
and fakes of CUDA and the TensorRT runtime for the host-side tests (no GPU needed).

The fakes keep real memory semantics: "device" and "pinned" buffers are numpy arrays addressed by
pointer, copies are memmoves, and the fake execution context reads its input tensor address and
writes the output one (computing `reference`), so buffer sizes, addresses and graph capture/replay
are exercised as on a GPU.
"""
from __future__ import annotations

import ctypes
import functools
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vs_espcn.backends.trt_run import host_array

MODEL_DIR = Path(__file__).resolve().parents[1] / "vs_espcn" / "models"
SHIPPED = ("espcn_x2.onnx", "espcn_x3.onnx", "espcn_x4.onnx", "espcn_x2_anime.onnx")


def shipped_models() -> list[Path]:
    """The shipped ONNX files present in this checkout (they arrive after training)."""
    return [MODEL_DIR / n for n in SHIPPED if (MODEL_DIR / n).is_file()]


@functools.lru_cache(maxsize=None)
def builder_status() -> tuple[object | None, str]:
    """(TensorRT module, "") when a TensorRT builder can be created here, else (None, reason)."""
    from vs_espcn.backends.trt_env import import_trt

    trt, why = import_trt()
    if trt is None:
        return None, why
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        if builder is None:
            return None, f"{trt.__name__}.Builder() returned None"
    except Exception as e:  # noqa: BLE001
        return None, f"{trt.__name__} builder cannot start: {e}"
    return trt, ""


def require_builder():
    """The TensorRT module, or skip the test with the reason."""
    trt, why = builder_status()
    if trt is None:
        pytest.skip(f"TensorRT builder unavailable: {why}")
    return trt


@functools.lru_cache(maxsize=None)
def gpu_skip_reason() -> str:
    """"" when the GPU tests (tests/gpu/) can run: `nvidia-smi` lists a GPU and the TensorRT
    backend reports itself usable; else why not."""
    import subprocess

    try:
        res = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"nvidia-smi does not work here ({e}): no NVIDIA GPU"
    if res.returncode != 0 or "GPU" not in res.stdout:
        return f"nvidia-smi found no GPU (rc={res.returncode}): {res.stderr.strip()[:200]}"
    from vs_espcn.backends.trt import trt_available

    ok, why = trt_available()
    return "" if ok else f"TensorRT backend unavailable: {why}"


# ---- fakes of CUDA and the TensorRT runtime ----------------------------------------------------

def reference(x: np.ndarray, scale: int) -> np.ndarray:
    """What the fake network computes: nearest-neighbour upscale, then 2x + 0.25."""
    return np.repeat(np.repeat(x, scale, -2), scale, -1) * 2 + 0.25


class FakeCuda:
    """CUDA runtime stand-in: numpy-backed allocations, per-stream graph capture."""

    def __init__(self) -> None:
        self.bufs: dict[int, np.ndarray] = {}
        self.streams: dict[int, list | None] = {}
        self.devices: list[int] = []
        self.launches = 0
        self._next = 1

    def set_device(self, d):
        self.devices.append(d)

    def malloc(self, n):
        arr = np.zeros(n, np.uint8)
        self.bufs[arr.ctypes.data] = arr
        return arr.ctypes.data

    malloc_host = malloc

    def free(self, p):
        del self.bufs[p]

    free_host = free

    def stream_create(self):
        self._next += 1
        self.streams[self._next] = None
        return self._next

    def stream_destroy(self, s):
        del self.streams[s]

    def stream_handle(self, s):
        return s

    def op(self, stream, fn):
        """Run `fn` now, or record it when the stream is capturing."""
        if self.streams[stream] is None:
            fn()
        else:
            self.streams[stream].append(fn)

    def memcpy_h2d(self, dst, src, n, stream):
        assert dst in self.bufs and src in self.bufs and n <= self.bufs[dst].size
        self.op(stream, lambda: ctypes.memmove(dst, src, n))

    memcpy_d2h = memcpy_h2d

    def synchronize(self, stream):
        pass

    def capture_begin(self, stream):
        self.streams[stream] = []

    def capture_end(self, stream):
        graph, self.streams[stream] = self.streams[stream], None
        return graph

    def graph_launch(self, graph, stream):
        self.launches += 1
        for fn in graph:
            fn()

    def graph_destroy(self, graph):
        pass


class FakeContext:
    """IExecutionContext stand-in computing `reference` from its input to its output address."""

    def __init__(self, cuda: FakeCuda, scale: int, max_shape, barrier: threading.Barrier | None = None):
        self.cuda, self.scale, self.max_shape, self.barrier = cuda, scale, max_shape, barrier
        self.addr: dict[str, int] = {}
        self.shape = None
        self.executions = 0

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr

    def set_input_shape(self, name, shape):
        if shape[2] > self.max_shape[0] or shape[3] > self.max_shape[1]:
            return False
        self.shape = tuple(shape)
        return True

    def execute_async_v3(self, stream):
        if self.barrier is not None:
            self.barrier.wait(timeout=30)  # all slots must be in flight together to pass
        self.executions += 1
        shape = self.shape

        def work():
            x = host_array(self.addr["lr"], shape)
            out = reference(x, self.scale)
            host_array(self.addr["hr"], out.shape)[...] = out

        self.cuda.op(stream, work)
        return True


def tile(shape, seed=0):
    """A random float32 LR tile."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


class FakeEngine:
    """ICudaEngine stand-in: one float32 input `lr`, one output `hr`."""

    num_io_tensors = 2

    def __init__(self, cuda, scale, shape):
        self.cuda, self.scale, self.shape = cuda, scale, shape

    def get_tensor_name(self, i):
        return ("lr", "hr")[i]

    def get_tensor_mode(self, name):
        return "in" if name == "lr" else "out"

    def get_tensor_dtype(self, name):
        return "f32"

    context_error: Exception | None = None  # set to make create_execution_context raise

    def create_execution_context(self, *config):
        if self.context_error is not None:
            raise self.context_error
        return FakeContext(self.cuda, self.scale, self.shape)


def fake_trt_module(cuda, scale, shape, loads):
    """A `tensorrt_rtx` stand-in with the runtime-side API the backend uses; records loads."""
    class ILogger:
        Severity = SimpleNamespace(ERROR=4, INTERNAL_ERROR=5, WARNING=3)

        def __init__(self):
            pass

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            """GOOD... -> an engine; RAISE... -> TypeError (as some bindings do); else None."""
            loads.append(bytes(data))
            if bytes(data).startswith(b"RAISE"):
                raise TypeError("deserialize_cuda_engine(): incompatible function arguments")
            return FakeEngine(cuda, scale, shape) if bytes(data).startswith(b"GOOD") else None

    return SimpleNamespace(__name__="tensorrt_rtx", __version__="0.fake", ILogger=ILogger, Runtime=Runtime,
                           BuilderFlag=SimpleNamespace(), TensorIOMode=SimpleNamespace(INPUT="in"),
                           DataType=SimpleNamespace(FLOAT="f32"))
