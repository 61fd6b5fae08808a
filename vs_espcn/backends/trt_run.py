"""Run a deserialized TensorRT engine: pinned host buffers, device buffers, streams, a context pool.

Host-side logic only talks to two small interfaces, so tests drive it with fakes:
- `cuda`: an object with the `CudaApi` methods (real one wraps NVIDIA's `cuda-python` runtime
  bindings, `cuda.bindings.runtime` or the older `cuda.cudart`);
- `context`: a TensorRT `IExecutionContext` (`set_input_shape`, `set_tensor_address`,
  `execute_async_v3`).
Each `ExecSlot` owns one execution context, one CUDA stream and its buffers; `SlotPool` lends
slots to caller threads, so `num_streams` frames are in flight at once and `run` is thread-safe.
"""
from __future__ import annotations

import ctypes
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")
FLOAT32 = 4
log = logging.getLogger("vs_espcn")
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(message: str) -> None:
    """Log `message` as a warning once per process (debug afterwards): slots fail alike."""
    with _warned_lock:
        first = message not in _warned
        _warned.add(message)
    log.log(logging.WARNING if first else logging.DEBUG, message)


def io_shapes(shape: tuple[int, int], scale: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """NCHW input and output shapes of one (H, W) LR tile."""
    h, w = shape
    return (1, 1, h, w), (1, 1, h * scale, w * scale)


def io_nbytes(shape: tuple[int, int], scale: int) -> tuple[int, int]:
    """float32 bytes of the input and output buffers of one tile."""
    h, w = shape
    return h * w * FLOAT32, h * w * scale * scale * FLOAT32


def host_array(ptr: int, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 numpy view of `prod(shape)` floats at address `ptr` (pinned host memory)."""
    n = int(np.prod(shape))
    return np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr)).reshape(shape)


class CudaError(RuntimeError):
    """A CUDA runtime call failed (message names the call and the CUDA error)."""


class CudaApi:
    """The few CUDA runtime calls the runner needs, raising CudaError instead of returning codes."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            try:  # cuda-python < 12.6 layout
                from cuda import cudart as rt  # type: ignore[no-redef]
            except ImportError as e:
                raise ImportError(f"cuda-python not installed ({e}): pip install cuda-python") from e
        self.rt = rt

    def _ok(self, name: str, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            msg = self.rt.cudaGetErrorString(err)[1]
            raise CudaError(f"{name} failed: {msg.decode() if isinstance(msg, bytes) else msg} ({int(err)})")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    def set_device(self, device: int) -> None:
        self._ok("cudaSetDevice", self.rt.cudaSetDevice(device))

    def malloc(self, nbytes: int) -> int:
        return int(self._ok("cudaMalloc", self.rt.cudaMalloc(nbytes)))

    def free(self, ptr: int) -> None:
        self._ok("cudaFree", self.rt.cudaFree(ptr))

    def malloc_host(self, nbytes: int) -> int:
        return int(self._ok("cudaMallocHost", self.rt.cudaMallocHost(nbytes)))

    def free_host(self, ptr: int) -> None:
        self._ok("cudaFreeHost", self.rt.cudaFreeHost(ptr))

    def stream_create(self):
        return self._ok("cudaStreamCreateWithFlags",
                        self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking))

    def stream_destroy(self, stream) -> None:
        self._ok("cudaStreamDestroy", self.rt.cudaStreamDestroy(stream))

    def stream_handle(self, stream) -> int:
        """The integer handle TensorRT's `execute_async_v3` takes."""
        return int(stream)

    def memcpy_h2d(self, dst: int, src: int, nbytes: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok("cudaMemcpyAsync(H2D)", self.rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream))

    def memcpy_d2h(self, dst: int, src: int, nbytes: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok("cudaMemcpyAsync(D2H)", self.rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream))

    def synchronize(self, stream) -> None:
        self._ok("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(stream))

    def capture_begin(self, stream) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._ok("cudaStreamBeginCapture", self.rt.cudaStreamBeginCapture(stream, mode))

    def capture_end(self, stream):
        """End capture and return an instantiated graph. The stream leaves capture mode even when
        this raises (an invalidated capture), and the graph template is always destroyed."""
        graph = self._ok("cudaStreamEndCapture", self.rt.cudaStreamEndCapture(stream))
        try:
            return self._ok("cudaGraphInstantiate", self.rt.cudaGraphInstantiate(graph, 0))
        finally:
            self.rt.cudaGraphDestroy(graph)

    def graph_launch(self, graph_exec, stream) -> None:
        self._ok("cudaGraphLaunch", self.rt.cudaGraphLaunch(graph_exec, stream))

    def graph_destroy(self, graph_exec) -> None:
        self._ok("cudaGraphExecDestroy", self.rt.cudaGraphExecDestroy(graph_exec))


class ExecSlot:
    """One execution context with its own stream and buffers sized for `max_shape` tiles.

    `dynamic`: the engine takes any tile up to `max_shape` (input shape set per call).
    `cuda_graph`: capture copy-in, enqueue and copy-out once and replay the graph (static only).
    """

    def __init__(self, cuda, context, names: tuple[str, str], max_shape: tuple[int, int], scale: int,
                 device: int = 0, dynamic: bool = False, cuda_graph: bool = False) -> None:
        self.cuda, self.context, self.device = cuda, context, device
        self.in_name, self.out_name = names
        self.max_shape, self.scale, self.dynamic = tuple(max_shape), scale, dynamic
        self.use_graph = cuda_graph and not dynamic
        self._graph = None
        self._current: tuple[int, int] | None = None
        cuda.set_device(device)
        n_in, n_out = io_nbytes(self.max_shape, scale)
        self.stream = cuda.stream_create()
        self.h_in, self.h_out = cuda.malloc_host(n_in), cuda.malloc_host(n_out)
        self.d_in, self.d_out = cuda.malloc(n_in), cuda.malloc(n_out)
        context.set_tensor_address(self.in_name, self.d_in)
        context.set_tensor_address(self.out_name, self.d_out)

    def _set_shape(self, shape: tuple[int, int]) -> None:
        if shape != self._current:
            if not self.context.set_input_shape(self.in_name, io_shapes(shape, self.scale)[0]):
                raise ValueError(f"engine rejected tile shape {shape} (profile max {self.max_shape})")
            self._current = shape

    def _enqueue(self, shape: tuple[int, int]) -> None:
        """Copy in, run, copy out on this slot's stream (not synchronized)."""
        n_in, n_out = io_nbytes(shape, self.scale)
        self.cuda.memcpy_h2d(self.d_in, self.h_in, n_in, self.stream)
        if not self.context.execute_async_v3(self.cuda.stream_handle(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        self.cuda.memcpy_d2h(self.h_out, self.d_out, n_out, self.stream)

    def _capture(self, shape: tuple[int, int]) -> None:
        """Record copy-in, enqueue and copy-out into a CUDA graph. Whatever fails, the stream
        leaves capture mode (a stream left capturing would fail every later call) and a partial
        graph is dropped; on failure this slot runs without a graph from then on."""
        self._enqueue(shape)  # warm-up: TensorRT may allocate or tune on the first enqueue
        self.cuda.synchronize(self.stream)
        graph, error = None, None
        try:
            self.cuda.capture_begin(self.stream)
            self._enqueue(shape)
        except BaseException as e:  # noqa: BLE001 - capture must be ended whatever happened
            error = e
        try:
            graph = self.cuda.capture_end(self.stream)
        except Exception as e:  # noqa: BLE001 - an invalidated capture ends here
            error = error or e
        if error is None:
            self._graph = graph
            return
        if graph is not None:
            self._destroy_graph(graph)
        self.use_graph = False
        if not isinstance(error, Exception):
            raise error
        _warn_once(f"espcn: CUDA graph capture failed ({type(error).__name__}: {error}); "
                   "running without CUDA graphs")

    def _destroy_graph(self, graph) -> None:
        try:
            self.cuda.graph_destroy(graph)
        except Exception:  # noqa: BLE001 - best effort
            pass

    def _check(self, lr: np.ndarray) -> tuple[int, int]:
        """The (h, w) of `lr`, or ValueError when the engine cannot take it."""
        shape = (int(lr.shape[0]), int(lr.shape[1])) if lr.ndim == 2 else (0, 0)
        if lr.ndim != 2 or (shape != self.max_shape and not self.dynamic) or min(shape) < 1 or \
                shape[0] > self.max_shape[0] or shape[1] > self.max_shape[1]:
            raise ValueError(f"tile shape {lr.shape} does not fit the engine ({self.max_shape}, "
                             f"{'dynamic' if self.dynamic else 'static'})")
        return shape

    def infer_into(self, lr: np.ndarray, out: np.ndarray) -> None:
        """float32 (h, w) tile -> (h*s, w*s) written into `out` (any strides, a float dtype);
        h, w == max_shape unless dynamic."""
        shape = self._check(lr)
        out_shape = (shape[0] * self.scale, shape[1] * self.scale)
        if out.shape != out_shape:
            raise ValueError(f"output array shape {out.shape} != {out_shape} for tile {shape}")
        self.cuda.set_device(self.device)  # the CUDA device is per calling thread
        self._set_shape(shape)
        np.copyto(host_array(self.h_in, shape), lr, casting="same_kind")
        if self.use_graph and self._graph is None:
            self._capture(shape)
        if self._graph is not None:
            self.cuda.graph_launch(self._graph, self.stream)
        else:
            self._enqueue(shape)
        self.cuda.synchronize(self.stream)
        np.copyto(out, host_array(self.h_out, out_shape), casting="same_kind")

    def infer(self, lr: np.ndarray) -> np.ndarray:
        """float32 (h, w) tile -> new float32 (h*s, w*s) array (not aliased to pinned memory)."""
        shape = self._check(lr)
        out = np.empty((shape[0] * self.scale, shape[1] * self.scale), np.float32)
        self.infer_into(lr, out)
        return out

    def close(self) -> None:
        """Free graph, buffers and stream (best effort)."""
        for fn, arg in ((self.cuda.graph_destroy, self._graph), (self.cuda.free, self.d_in),
                        (self.cuda.free, self.d_out), (self.cuda.free_host, self.h_in),
                        (self.cuda.free_host, self.h_out), (self.cuda.stream_destroy, self.stream)):
            if arg is not None:
                try:
                    fn(arg)
                except Exception:  # noqa: BLE001 - freeing at shutdown must not raise
                    pass
        self._graph = None


class SlotPool(Generic[T]):
    """Thread-safe pool: each caller borrows one slot exclusively; as many calls run at once as
    there are slots, the others wait."""

    def __init__(self, slots: list[T]) -> None:
        if not slots:
            raise ValueError("a pool needs at least one slot")
        self.slots = list(slots)
        self._free: queue.Queue[T] = queue.Queue()
        for slot in self.slots:
            self._free.put(slot)

    @contextmanager
    def borrow(self) -> Iterator[T]:
        """Lend one slot for the duration of the `with` block."""
        slot = self._free.get()
        try:
            yield slot
        finally:
            self._free.put(slot)

    def run(self, fn: Callable[[T], object]):
        """Call `fn(slot)` with a borrowed slot and return its result."""
        with self.borrow() as slot:
            return fn(slot)
