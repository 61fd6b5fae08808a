"""Host side of the TensorRT backend against a fake CUDA + fake executor (no GPU needed).

The fakes keep real memory semantics: "device" and "pinned" buffers are numpy arrays addressed by
pointer, copies are memmoves, and the fake execution context reads its input tensor address and
writes the output one, so buffer sizes, addresses, shapes, graph capture/replay and the pool's
thread-safety are exercised as on a GPU.
"""
from __future__ import annotations

import ctypes
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
import vapoursynth as vs

from tests.onnx_models import make_espcn_onnx
from vs_espcn.backends import TrtOptions
from vs_espcn.backends import trt as trt_mod
from vs_espcn.backends import trt_build, trt_run
from vs_espcn.backends.trt_env import GpuInfo
from vs_espcn.backends.trt_run import ExecSlot, SlotPool, host_array, io_nbytes, io_shapes


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


def make_slot(scale=2, shape=(6, 10), dynamic=False, cuda_graph=False):
    cuda = FakeCuda()
    ctx = FakeContext(cuda, scale, shape)
    return cuda, ctx, ExecSlot(cuda, ctx, ("lr", "hr"), shape, scale, device=1, dynamic=dynamic,
                                cuda_graph=cuda_graph)


def tile(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_io_shapes_and_bytes():
    assert io_shapes((360, 640), 3) == ((1, 1, 360, 640), (1, 1, 1080, 1920))
    assert io_nbytes((360, 640), 2) == (360 * 640 * 4, 720 * 1280 * 4)


def test_static_slot_runs_and_rejects_other_shapes():
    cuda, ctx, slot = make_slot(3)
    assert {a.size for a in cuda.bufs.values()} == {6 * 10 * 4, 18 * 30 * 4}
    for seed in range(3):
        x = tile((6, 10), seed)
        np.testing.assert_array_equal(slot.infer(x), reference(x, 3))
    assert cuda.devices and set(cuda.devices) == {1}
    for bad in (np.zeros((5, 10), np.float32), np.zeros((6, 10, 1), np.float32), np.zeros(6, np.float32)):
        with pytest.raises(ValueError, match="does not fit the engine"):
            slot.infer(bad)


def test_output_is_not_aliased_to_the_pinned_buffer():
    _, _, slot = make_slot()
    a = slot.infer(tile((6, 10), 1))
    keep = a.copy()
    slot.infer(tile((6, 10), 2))
    np.testing.assert_array_equal(a, keep)


def test_dynamic_slot_takes_smaller_tiles():
    _, ctx, slot = make_slot(2, (8, 12), dynamic=True)
    for shape in ((8, 12), (3, 5), (1, 1), (8, 2), (3, 5)):
        x = tile(shape)
        np.testing.assert_array_equal(slot.infer(x), reference(x, 2))
        assert ctx.shape == (1, 1, *shape)
    with pytest.raises(ValueError):
        slot.infer(tile((9, 12)))


def test_cuda_graph_captures_once_and_replays_with_new_data():
    cuda, ctx, slot = make_slot(2, cuda_graph=True)
    for seed in range(4):
        x = tile((6, 10), seed)
        np.testing.assert_array_equal(slot.infer(x), reference(x, 2))
    assert ctx.executions == 2  # warm-up + capture; later frames are graph replays
    assert cuda.launches == 4


class CaptureFailingContext(FakeContext):
    """Like TensorRT with an op that cannot be captured: enqueue fails while the stream captures."""

    def execute_async_v3(self, stream):
        if self.cuda.streams[stream] is not None:
            raise RuntimeError("operation not permitted when stream is capturing")
        return super().execute_async_v3(stream)


class InstantiateFailingCuda(FakeCuda):
    """cudaStreamEndCapture ends the capture, then cudaGraphInstantiate fails."""

    def capture_end(self, stream):
        super().capture_end(stream)
        raise trt_run.CudaError("cudaGraphInstantiate failed: out of memory (2)")


@pytest.mark.parametrize("failure", ["enqueue", "instantiate"])
def test_failed_graph_capture_ends_capture_and_falls_back(failure, caplog):
    cuda = FakeCuda() if failure == "enqueue" else InstantiateFailingCuda()
    ctx = (CaptureFailingContext if failure == "enqueue" else FakeContext)(cuda, 2, (6, 10))
    slot = ExecSlot(cuda, ctx, ("lr", "hr"), (6, 10), 2, cuda_graph=True)
    trt_run._warned.clear()
    with caplog.at_level(logging.DEBUG, logger="vs_espcn"):
        for seed in range(3):
            x = tile((6, 10), seed)
            np.testing.assert_array_equal(slot.infer(x), reference(x, 2))
            assert cuda.streams[slot.stream] is None  # not left capturing
        other = ExecSlot(cuda, type(ctx)(cuda, 2, (6, 10)), ("lr", "hr"), (6, 10), 2, cuda_graph=True)
        other.infer(tile((6, 10)))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "CUDA graph capture failed" in warnings[0].getMessage()
    assert not slot.use_graph and slot._graph is None and cuda.launches == 0


def test_real_capture_end_destroys_the_template_when_instantiate_fails():
    class Rt:
        destroyed = []

        def cudaStreamEndCapture(self, stream):
            return 0, "graph"

        def cudaGraphInstantiate(self, graph, flags):
            return 2, None

        def cudaGetErrorString(self, err):
            return 0, b"out of memory"

        def cudaGraphDestroy(self, graph):
            self.destroyed.append(graph)
            return (0,)

    api = trt_run.CudaApi.__new__(trt_run.CudaApi)
    api.rt = Rt()
    with pytest.raises(trt_run.CudaError, match=r"cudaGraphInstantiate failed: out of memory \(2\)"):
        api.capture_end(7)
    assert Rt.destroyed == ["graph"]


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_infer_into_writes_a_strided_view(cuda_graph):
    _, _, slot = make_slot(2, cuda_graph=cuda_graph)
    for seed in range(2):
        x = tile((6, 10), seed)
        frame = np.full((14, 44), -1.0, np.float32)
        view = frame[1:13, 2:42:2]  # (12, 20), non-contiguous
        slot.infer_into(x, view)
        np.testing.assert_array_equal(view, reference(x, 2))
        assert (frame[0] == -1).all() and (frame[1:13, 3:42:2] == -1).all()
    with pytest.raises(ValueError, match="output array shape"):
        slot.infer_into(tile((6, 10)), np.zeros((12, 21), np.float32))


def test_close_frees_everything():
    cuda, _, slot = make_slot(cuda_graph=True)
    slot.infer(tile((6, 10)))
    slot.close()
    assert cuda.bufs == {} and cuda.streams == {}


def test_pool_keeps_num_streams_frames_in_flight_and_is_exclusive():
    cuda = FakeCuda()
    barrier = threading.Barrier(2)
    slots = [ExecSlot(cuda, FakeContext(cuda, 2, (6, 10), barrier), ("lr", "hr"), (6, 10), 2) for _ in range(2)]
    pool = SlotPool(slots)
    in_use, lock, clash = set(), threading.Lock(), []

    def work(seed):
        x = tile((6, 10), seed)

        def on(slot):
            with lock:
                clash.append(slot in in_use)
                in_use.add(slot)
            try:
                return slot.infer(x)
            finally:
                with lock:
                    in_use.discard(slot)

        return x, pool.run(on)

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(work, range(16)))
    for x, y in results:
        np.testing.assert_array_equal(y, reference(x, 2))
    assert not any(clash)
    assert sum(s.context.executions for s in slots) == 16
    with pytest.raises(ValueError):
        SlotPool([])


# ---- TrtBackend wiring with fake TensorRT runtime + fake CUDA -------------------------------

class FakeEngine:
    num_io_tensors = 2

    def __init__(self, cuda, scale, shape):
        self.cuda, self.scale, self.shape = cuda, scale, shape

    def get_tensor_name(self, i):
        return ("lr", "hr")[i]

    def get_tensor_mode(self, name):
        return "in" if name == "lr" else "out"

    def get_tensor_dtype(self, name):
        return "f32"

    def create_execution_context(self, *config):
        return FakeContext(self.cuda, self.scale, self.shape)


def fake_trt_module(cuda, scale, shape, loads):
    class ILogger:
        Severity = SimpleNamespace(ERROR=4, INTERNAL_ERROR=5, WARNING=3)

        def __init__(self):
            pass

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            loads.append(bytes(data))
            return FakeEngine(cuda, scale, shape) if bytes(data).startswith(b"GOOD") else None

    return SimpleNamespace(__name__="tensorrt_rtx", __version__="0.fake", ILogger=ILogger, Runtime=Runtime,
                           BuilderFlag=SimpleNamespace(), TensorIOMode=SimpleNamespace(INPUT="in"),
                           DataType=SimpleNamespace(FLOAT="f32"))


@pytest.fixture
def fake_backend_env(tmp_path, monkeypatch):
    """Patch the backend so TensorRT and CUDA are fakes; returns a dict to steer the build."""
    cuda, shape, loads = FakeCuda(), (6, 10), []
    state = {"engine": b"GOOD engine", "builds": 0, "loads": loads, "cuda": cuda, "shape": shape}
    fake = fake_trt_module(cuda, 2, shape, loads)

    def build(trt, onnx_bytes, spec):
        state["builds"] += 1
        return state["engine"]

    monkeypatch.setattr(trt_mod, "trt_available", lambda device_id=0: (True, ""))
    monkeypatch.setattr(trt_mod, "import_trt", lambda: (fake, ""))
    monkeypatch.setattr(trt_mod, "probe_gpu", lambda device_id=0: (GpuInfo(0, "Fake RTX", (8, 9)), ""))
    monkeypatch.setattr(trt_run, "CudaApi", lambda: cuda)
    monkeypatch.setattr(trt_build, "build_serialized", build)
    from vs_espcn import models

    state["model"] = models.load(make_espcn_onnx(tmp_path / "m.onnx", 2))
    state["options"] = TrtOptions(num_streams=2, cache_dir=str(tmp_path / "cache"))
    return state


def test_backend_builds_caches_and_runs_threaded(fake_backend_env):
    env = fake_backend_env
    backend = trt_mod.TrtBackend(env["model"], env["shape"], env["options"])
    assert backend.scale == 2 and env["builds"] == 1 and len(backend._pool.slots) == 2
    xs = [tile(env["shape"], s) for s in range(8)]
    with ThreadPoolExecutor(3) as ex:
        for x, y in zip(xs, ex.map(backend.run, xs)):
            np.testing.assert_array_equal(y, reference(x, 2))
    with pytest.raises(vs.Error, match=r"espcn\.Upscale: tile shape .* does not fit"):
        backend.run(tile((5, 10)))
    backend.close()
    trt_mod.TrtBackend(env["model"], env["shape"], env["options"]).close()
    assert env["builds"] == 1  # second backend loads the cached engine


def test_cached_engine_that_does_not_deserialize_is_rebuilt(fake_backend_env, caplog):
    env = fake_backend_env
    env["engine"] = b"STALE engine from another driver"
    trt_mod.ensure_engine(env["model"], env["shape"], env["options"], trt_mod.import_trt()[0],
                          trt_mod.probe_gpu()[0])
    env["engine"] = b"GOOD engine"
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        backend = trt_mod.TrtBackend(env["model"], env["shape"], env["options"])
    assert env["builds"] == 2 and env["loads"] == [b"STALE engine from another driver", b"GOOD engine"]
    assert "could not deserialize" in caplog.text
    x = tile(env["shape"])
    np.testing.assert_array_equal(backend.run(x), reference(x, 2))


def test_fresh_engine_that_does_not_load_is_a_clear_error(fake_backend_env):
    env = fake_backend_env
    env["engine"] = b"BAD"
    with pytest.raises(vs.Error, match=r'espcn\.Upscale: TensorRT could not load engine .*backend="ort"'):
        trt_mod.TrtBackend(env["model"], env["shape"], env["options"])
    assert env["builds"] == 1  # no rebuild loop on a fresh build


def test_build_failure_is_a_clear_error(fake_backend_env, monkeypatch):
    def fail(trt, onnx_bytes, spec):
        raise trt_build.BuildError("TensorRT could not parse the ONNX (unsupported op): FancyOp")

    monkeypatch.setattr(trt_build, "build_serialized", fail)
    with pytest.raises(vs.Error, match=r'engine build failed: .*FancyOp; use backend="ort"'):
        trt_mod.TrtBackend(fake_backend_env["model"], fake_backend_env["shape"], fake_backend_env["options"])


def test_backend_frees_cuda_buffers_on_close_and_collection(fake_backend_env):
    import gc

    env = fake_backend_env
    backend = trt_mod.TrtBackend(env["model"], env["shape"], env["options"])
    assert env["cuda"].bufs
    backend.close()
    assert env["cuda"].bufs == {} and env["cuda"].streams == {}
    trt_mod.TrtBackend(env["model"], env["shape"], env["options"]).run(tile(env["shape"]))
    gc.collect()
    assert env["cuda"].bufs == {}
