"""TrtBackend wiring (engine cache -> deserialize -> context pool -> run) with a fake TensorRT
runtime and fake CUDA (tests.trt_helpers): rebuild of bad engines, clear errors with the
backend="ort" hint whatever TensorRT raises, the process-wide runner cache."""
from __future__ import annotations

import gc
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import vapoursynth as vs

from tests.onnx_models import make_espcn_onnx
from tests.trt_helpers import FakeCuda, FakeEngine, fake_trt_module, reference, tile
from vs_espcn.backends import TrtOptions
from vs_espcn.backends import trt as trt_mod
from vs_espcn.backends import trt_build, trt_run
from vs_espcn.backends.trt_env import GpuInfo

HINT = r'; use backend="ort" \(CPU\) instead$'


@pytest.fixture
def fake_backend_env(tmp_path, monkeypatch):
    """Patch the backend so TensorRT and CUDA are fakes; returns a dict to steer the build."""
    cuda, shape, loads = FakeCuda(), (6, 10), []
    state = {"engine": b"GOOD engine", "builds": 0, "loads": loads, "cuda": cuda, "shape": shape}
    fake = fake_trt_module(cuda, 2, shape, loads)

    def build(trt, onnx_bytes, spec):
        state["builds"] += 1
        return state["engine"]

    monkeypatch.setattr(trt_mod, "trt_available", lambda *, device_id=0: (True, ""))
    monkeypatch.setattr(trt_mod, "import_trt", lambda: (fake, ""))
    monkeypatch.setattr(trt_mod, "probe_gpu", lambda device_id=0: (GpuInfo(0, "Fake RTX", (8, 9)), ""))
    monkeypatch.setattr(trt_run, "CudaApi", lambda: cuda)
    monkeypatch.setattr(trt_build, "build_serialized", build)
    from vs_espcn import models

    state["model"] = models.load(make_espcn_onnx(tmp_path / "m.onnx", 2))
    state["options"] = TrtOptions(num_streams=2, cache_dir=str(tmp_path / "cache"))
    trt_mod.clear_runners()
    yield state
    trt_mod.clear_runners()


def new_backend(env, **changes):
    opts = env["options"]
    if changes:
        opts = TrtOptions(**{**{f: getattr(opts, f) for f in opts.__dataclass_fields__}, **changes})
    return trt_mod.TrtBackend(env["model"], env["shape"], opts)


def test_backend_builds_caches_and_runs_threaded(fake_backend_env):
    env = fake_backend_env
    backend = new_backend(env)
    assert backend.scale == 2 and env["builds"] == 1 and len(backend._runner.pool.slots) == 2
    xs = [tile(env["shape"], s) for s in range(8)]
    with ThreadPoolExecutor(3) as ex:
        for x, y in zip(xs, ex.map(backend.run, xs)):
            np.testing.assert_array_equal(y, reference(x, 2))
    with pytest.raises(vs.Error, match=r"espcn\.Upscale: tile shape .* does not fit"):
        backend.run(tile((5, 10)))
    trt_mod.clear_runners()
    new_backend(env)
    assert env["builds"] == 1 and len(env["loads"]) == 2  # a new runner loads the cached engine


@pytest.mark.parametrize("stale", [b"STALE engine from another driver", b"RAISE on deserialize"])
def test_cached_engine_that_does_not_deserialize_is_rebuilt(fake_backend_env, caplog, stale):
    """Deserialize returning None and deserialize raising both lead to delete + rebuild."""
    env = fake_backend_env
    env["engine"] = stale
    trt_mod.ensure_engine(env["model"], env["shape"], env["options"], trt_mod.import_trt()[0],
                          trt_mod.probe_gpu()[0])
    env["engine"] = b"GOOD engine"
    with caplog.at_level(logging.WARNING, logger="vs_espcn"):
        backend = new_backend(env)
    assert env["builds"] == 2 and env["loads"] == [stale, b"GOOD engine"]
    assert "could not deserialize" in caplog.text
    if stale.startswith(b"RAISE"):
        assert "TypeError: deserialize_cuda_engine(): incompatible" in caplog.text
    x = tile(env["shape"])
    np.testing.assert_array_equal(backend.run(x), reference(x, 2))


@pytest.mark.parametrize("engine", [b"BAD", b"RAISE"])
def test_fresh_engine_that_does_not_load_is_a_clear_error(fake_backend_env, engine):
    env = fake_backend_env
    env["engine"] = engine
    with pytest.raises(vs.Error, match=r'^espcn\.Upscale: TensorRT could not load engine .*' + HINT):
        new_backend(env)
    assert env["builds"] == 1  # no rebuild loop on a fresh build


@pytest.mark.parametrize("error", [trt_build.BuildError("TensorRT could not parse the ONNX: FancyOp"),
                                   TypeError("build_serialized_network(): incompatible arguments")])
def test_build_failure_is_a_clear_error(fake_backend_env, monkeypatch, error):
    def fail(trt, onnx_bytes, spec):
        raise error

    monkeypatch.setattr(trt_build, "build_serialized", fail)
    with pytest.raises(vs.Error, match=r"^espcn\.Upscale: TensorRT engine build failed: .*"
                                       r"(FancyOp|TypeError: build_serialized_network).*" + HINT):
        new_backend(fake_backend_env)


@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory"), TypeError("bad config")])
def test_context_creation_failure_is_a_clear_error_and_frees(fake_backend_env, monkeypatch, error):
    monkeypatch.setattr(FakeEngine, "context_error", error)
    with pytest.raises(vs.Error, match=r"^espcn\.Upscale: TensorRT could not set up execution on CUDA "
                                       rf"device 0: {type(error).__name__}: {error}" + HINT):
        new_backend(fake_backend_env)
    assert fake_backend_env["cuda"].bufs == {} and fake_backend_env["cuda"].streams == {}
    assert not trt_mod._runners  # a failure is not cached
    monkeypatch.setattr(FakeEngine, "context_error", None)
    new_backend(fake_backend_env).run(tile(fake_backend_env["shape"]))


def test_inference_failure_of_any_type_is_a_clear_error(fake_backend_env, monkeypatch):
    backend = new_backend(fake_backend_env)

    def boom(self, lr, out):
        raise TypeError("execute_async_v3(): incompatible function arguments")

    monkeypatch.setattr(trt_run.ExecSlot, "infer_into", boom)
    with pytest.raises(vs.Error, match=r"^espcn\.Upscale: TensorRT inference failed: TypeError: .*" + HINT):
        backend.run(tile(fake_backend_env["shape"]))


def test_runner_is_shared_per_key_and_options(fake_backend_env):
    """Upscale per frame (FrameEval) must not deserialize and allocate per call."""
    env = fake_backend_env
    with ThreadPoolExecutor(4) as ex:
        backends = list(ex.map(lambda _: new_backend(env), range(8)))
    assert len({id(b._runner) for b in backends}) == 1
    assert env["builds"] == 1 and len(env["loads"]) == 1
    n_bufs = len(env["cuda"].bufs)
    other = new_backend(env, num_streams=1)
    assert other._runner is not backends[0]._runner and len(env["loads"]) == 2
    assert len(env["cuda"].bufs) == n_bufs + 4  # one slot: 2 pinned + 2 device buffers
    assert new_backend(env, num_streams=1)._runner is other._runner
    x = tile(env["shape"])
    np.testing.assert_array_equal(other.run(x), backends[3].run(x))


def test_runner_cache_is_bounded_and_evicted_runners_are_freed(fake_backend_env):
    env = fake_backend_env
    first = new_backend(env, opt_level=0)
    for level in range(1, trt_mod.MAX_RUNNERS + 1):
        new_backend(env, opt_level=level)
    assert len(trt_mod._runners) == trt_mod.MAX_RUNNERS
    assert first._runner not in trt_mod._runners.values()
    np.testing.assert_array_equal(first.run(tile(env["shape"])), reference(tile(env["shape"]), 2))
    first_bufs = {s.d_in for s in first._runner.pool.slots}
    del first
    gc.collect()
    assert not first_bufs & set(env["cuda"].bufs)  # freed with its last backend
    assert len(env["cuda"].bufs) == trt_mod.MAX_RUNNERS * 2 * 4  # the cached ones stay


def test_close_and_clear_free_cuda_buffers(fake_backend_env):
    env = fake_backend_env
    backend = new_backend(env)
    assert env["cuda"].bufs
    backend.close()
    with pytest.raises(vs.Error, match="closed"):
        backend.run(tile(env["shape"]))
    assert env["cuda"].bufs  # still cached for the next Upscale call
    trt_mod.clear_runners()
    gc.collect()
    assert env["cuda"].bufs == {} and env["cuda"].streams == {}


def test_engine_is_deserialized_on_the_requested_device(fake_backend_env, monkeypatch):
    env = fake_backend_env
    monkeypatch.setattr(trt_mod, "probe_gpu", lambda device_id=0: (GpuInfo(device_id, "Fake RTX", (8, 9)), ""))
    order = []
    real = env["cuda"].set_device
    monkeypatch.setattr(env["cuda"], "set_device", lambda d: order.append(("set", d)) or real(d))
    runtime_cls = trt_mod.import_trt()[0].Runtime
    orig = runtime_cls.deserialize_cuda_engine
    monkeypatch.setattr(runtime_cls, "deserialize_cuda_engine",
                        lambda self, data: order.append("load") or orig(self, data))
    backend = new_backend(env, device_id=1)
    assert order[:2] == [("set", 1), "load"]
    backend.run(tile(env["shape"]))
    assert set(env["cuda"].devices) == {1}


def test_concurrent_first_calls_build_once(fake_backend_env, monkeypatch):
    env = fake_backend_env
    gate = threading.Event()

    def slow_build(trt, onnx_bytes, spec):
        gate.wait(5)
        env["builds"] += 1
        return b"GOOD engine"

    monkeypatch.setattr(trt_build, "build_serialized", slow_build)
    with ThreadPoolExecutor(3) as ex:
        futures = [ex.submit(new_backend, env) for _ in range(3)]
        gate.set()
        runners = {id(f.result()._runner) for f in futures}
    assert len(runners) == 1 and env["builds"] == 1


def test_real_runtime_reports_why_garbage_does_not_deserialize():
    """With the installed TensorRT (tensorrt-rtx in CI): a bad engine gives (None, TensorRT's reason)."""
    from tests.trt_helpers import require_builder

    trt = require_builder()
    engine, why = trt_mod._Runtime(trt).deserialize(b"not an engine" * 10)
    assert engine is None and "Error Code" in why
