"""Host side of the TensorRT runner (`trt_run`) against a fake CUDA + fake executor (no GPU needed):
buffer sizes, addresses, shapes, graph capture/replay and the pool's thread-safety, with the
fakes of `tests.trt_helpers` (real memory semantics)."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.trt_helpers import FakeContext, FakeCuda, reference, tile
from vs_espcn.backends import trt_run
from vs_espcn.backends.trt_run import ExecSlot, SlotPool, io_nbytes, io_shapes


def make_slot(scale=2, shape=(6, 10), dynamic=False, cuda_graph=False):
    cuda = FakeCuda()
    ctx = FakeContext(cuda, scale, shape)
    return cuda, ctx, ExecSlot(cuda, ctx, ("lr", "hr"), shape, scale, device=1, dynamic=dynamic,
                                cuda_graph=cuda_graph)


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
