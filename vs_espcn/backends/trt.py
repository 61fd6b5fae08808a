"""TensorRT / TensorRT-RTX backend: engine key -> cached or freshly built engine -> context pool.

Build (`trt_build`), cache (`engine_cache`) and run (`trt_run`) live apart; this module wires
them and turns every failure (whatever exception TensorRT or CUDA raise) into
`vapoursynth.Error("espcn.Upscale: ...; use backend=\"ort\"")`. A cached engine that TensorRT
cannot deserialize (returns None or raises: other driver, other TensorRT build, corrupt bytes
that slipped past the checksum) is deleted and rebuilt once, with a warning.

The deserialized engine with its CUDA buffers and streams (a `_Runner`) is shared process-wide
per (engine key, device, streams, graphs, cache dir) in a small LRU, like the ONNX Runtime
session cache: a script that calls Upscale per frame (inside FrameEval) deserializes and
allocates once, not per call. `TrtBackend` is a cheap handle on a runner.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from types import ModuleType

import numpy as np

from ..engine_cache import CacheDirError, EngineCache, EngineKey, atomic_write
from .trt_env import GpuInfo, import_trt, package_of, probe_gpu, trt_available  # noqa: F401 (re-export)

log = logging.getLogger("vs_espcn")
FALLBACK = 'use backend="ort" (CPU) instead'
MAX_RUNNERS = 4  # engines + GPU buffers kept alive for reuse; an evicted one is freed with its last backend


def _error(msg: str) -> Exception:
    """vapoursynth.Error naming the filter, the cause and the fallback."""
    text = f"espcn.Upscale: {msg}; {FALLBACK}"
    try:
        import vapoursynth as vs

        return vs.Error(text)
    except ImportError:  # pragma: no cover - vapoursynth is a hard dependency of the plugin
        return RuntimeError(text)


def _opt(options, name: str, default):
    """Duck-typed read of a TrtOptions field (None options -> all defaults)."""
    return getattr(options, name, default) if options is not None else default


def model_sha256(model) -> str:
    """The ONNX content hash: `model.sha256` when set, else hashed from the file."""
    sha = getattr(model, "sha256", "") or ""
    return sha or hashlib.sha256(Path(model.path).read_bytes()).hexdigest()


def make_key(model, shape: tuple[int, int], options, trt: ModuleType, gpu: GpuInfo | None) -> EngineKey:
    """The cache key of the engine for `model` at LR tile `shape` with `options` on `gpu`
    (None: building without a GPU, e.g. `engines build` on a CI machine)."""
    from .trt_build import precision_mode, profile_for

    fp16 = bool(_opt(options, "fp16", True))
    pkg, ver = package_of(trt)
    return EngineKey(
        onnx_sha256=model_sha256(model), model_name=str(getattr(model, "name", "") or Path(model.path).stem),
        scale=int(model.scale), profile=profile_for(shape, bool(_opt(options, "static_shape", True))),
        precision="fp16" if fp16 else "fp32", precision_mode=precision_mode(trt, fp16),
        trt_package=pkg, trt_version=ver,
        gpu_name=gpu.name if gpu else "none", compute_capability=gpu.cc_label if gpu else "none",
        opt_level=int(_opt(options, "opt_level", 3)), workspace_mib=int(_opt(options, "workspace", 0)),
    )


def timing_cache_path(cache: EngineCache, key: EngineKey) -> Path:
    """Persistent timing cache beside the engines, one per TensorRT version and GPU."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{key.trt_package}-{key.trt_version}-{key.gpu_name}-{key.compute_capability}")
    return cache.directory / f"timing-{slug}.cache"


def ensure_engine(model, shape: tuple[int, int], options, trt: ModuleType,
                  gpu: GpuInfo | None) -> tuple[EngineCache, EngineKey, Path, bytes, bool]:
    """Cached engine bytes for the key, building (under the cache lock) when absent or invalid.
    Returns (cache, key, path, engine bytes, built_now). Raises BuildError (any failure of the
    build, whatever TensorRT raised) / OSError (cache directory, lock)."""
    from .trt_build import BuildError, BuildSpec, build_serialized

    cache = EngineCache(_opt(options, "cache_dir", "") or None)
    key = make_key(model, shape, options, trt, gpu)

    def build() -> bytes:
        log.warning("espcn: building TensorRT engine for %s %s (%s %s, model %s), this can take minutes",
                    key.shape_label(), key.precision, key.trt_package, key.trt_version, key.model_name)
        spec = BuildSpec(profile=key.profile, fp16=key.precision == "fp16", opt_level=key.opt_level,
                         workspace_mib=key.workspace_mib, timing_cache=timing_cache_path(cache, key))
        try:
            return build_serialized(trt, Path(model.path).read_bytes(), spec)
        except BuildError:
            raise
        except Exception as e:  # a TensorRT API error (TypeError, RuntimeError, ...) is a failed build too
            raise BuildError(f"{type(e).__name__}: {e}") from e

    path, data, built = cache.get_or_build(key, build)
    return cache, key, path, data, built


def _ensure_or_error(model, shape, options, trt, gpu):
    """`ensure_engine` with its failures turned into the user-facing error."""
    from .trt_build import BuildError

    try:
        return ensure_engine(model, shape, options, trt, gpu)
    except BuildError as e:
        raise _error(f"TensorRT engine build failed: {e}") from e
    except CacheDirError as e:  # cache_dir is a file / unreadable / read-only without the engine
        raise _error(str(e)) from e
    except Exception as e:  # OSError, filelock.Timeout, ...
        raise _error(f"TensorRT engine cache error: {type(e).__name__}: {e}") from e


class _Runtime:
    """A TensorRT runtime with the logger that must outlive every engine it deserializes."""

    def __init__(self, trt: ModuleType) -> None:
        from .trt_build import make_logger

        self.logger = make_logger(trt)
        self.runtime = trt.Runtime(self.logger)

    def deserialize(self, data: bytes) -> tuple[object | None, str]:
        """(ICudaEngine, "") or (None, why): TensorRT signals a bad engine by returning None or,
        in some versions and bindings, by raising; both mean "this file cannot be used"."""
        self.logger.errors.clear()
        try:
            engine = self.runtime.deserialize_cuda_engine(data)
        except Exception as e:  # noqa: BLE001
            return None, f"{type(e).__name__}: {e}"
        return engine, ("" if engine is not None else " | ".join(self.logger.errors) or "no detail")


def io_names(engine, trt: ModuleType) -> tuple[str, str]:
    """(input name, output name) of a one-input one-output float32 engine."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outs = [n for n in names if n not in ins]
    if len(ins) != 1 or len(outs) != 1:
        raise _error(f"TensorRT engine has {len(ins)} inputs / {len(outs)} outputs, expected 1 / 1")
    for n in (ins[0], outs[0]):
        if engine.get_tensor_dtype(n) != trt.DataType.FLOAT:
            raise _error(f"TensorRT engine tensor {n!r} is {engine.get_tensor_dtype(n)}, expected float32")
    return ins[0], outs[0]


class _Runner:
    """A deserialized engine, its runtime and a pool of execution slots on one CUDA device:
    everything on the GPU one (engine key, run options) needs. Shared by TrtBackend handles;
    its CUDA buffers and streams are freed when the last reference goes (or on `close`)."""

    def __init__(self, trt: ModuleType, model, shape: tuple[int, int], options, gpu: GpuInfo,
                 device: int) -> None:
        from .trt_run import CudaApi

        self.scale, self.shape, self.device = int(model.scale), shape, device
        self.dynamic = not bool(_opt(options, "static_shape", True))
        self._rtcache_path: Path | None = None
        self._rtcache = None
        self._saved = threading.Event()
        try:
            self.cuda = CudaApi()
            self.cuda.set_device(device)  # the engine is deserialized onto the current device
            self.runtime = _Runtime(trt)
        except Exception as e:
            raise _error(f"TensorRT runtime could not start on CUDA device {device} ({gpu.name}): "
                         f"{type(e).__name__}: {e}") from e
        self.engine = self._load(trt, model, options, gpu)
        self.pool = self._make_pool(trt, options)
        self._finalizer = weakref.finalize(self, _close_slots, list(self.pool.slots))

    def _load(self, trt: ModuleType, model, options, gpu: GpuInfo):
        """The deserialized engine; a cached one that does not deserialize is rebuilt once."""
        cache, key, path, data, built = _ensure_or_error(model, self.shape, options, trt, gpu)
        engine, why = self.runtime.deserialize(data)
        if engine is None and not built:
            try:
                cache.invalidate(key, f"TensorRT could not deserialize it ({why}; built by another "
                                      "TensorRT/driver, or corrupt)")
            except OSError as e:
                raise _error(f"TensorRT engine cache error: cannot delete bad engine {path}: {e}") from e
            cache, key, path, data, built = _ensure_or_error(model, self.shape, options, trt, gpu)
            engine, why = self.runtime.deserialize(data)
        if engine is None:
            raise _error(f"TensorRT could not load engine {path} on {gpu.name} (GPU unsupported by "
                         f"{key.trt_package}, or out of GPU memory): {why}")
        self._rtcache_path = path.with_suffix(".rtcache")
        log.info("espcn: TensorRT engine %s", path)
        return engine

    def _runtime_config(self, trt: ModuleType, cuda_graph: bool):
        """TensorRT-RTX (and newer TensorRT) runtime config: built-in CUDA graphs and the JIT
        kernel runtime cache persisted beside the engine. None where unsupported."""
        if not hasattr(self.engine, "create_runtime_config"):
            return None
        config = self.engine.create_runtime_config()
        if cuda_graph and hasattr(trt, "CudaGraphStrategy") and hasattr(config, "cuda_graph_strategy"):
            config.cuda_graph_strategy = trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        if hasattr(config, "create_runtime_cache") and self._rtcache_path is not None:
            try:
                self._rtcache = config.create_runtime_cache()
                if self._rtcache_path.exists():
                    self._rtcache.deserialize(self._rtcache_path.read_bytes())
                config.set_runtime_cache(self._rtcache)
            except Exception as e:  # noqa: BLE001 - a stale runtime cache only costs JIT time
                log.warning("espcn: ignoring TensorRT runtime cache %s (%s)", self._rtcache_path, e)
                self._rtcache = None
        return config

    def _make_pool(self, trt: ModuleType, options):
        from .trt_run import ExecSlot, SlotPool

        names = io_names(self.engine, trt)
        cuda_graph = bool(_opt(options, "cuda_graph", False))
        slots = []
        try:
            config = self._runtime_config(trt, cuda_graph)
            builtin_graph = config is not None and cuda_graph and hasattr(config, "cuda_graph_strategy")
            for _ in range(max(1, int(_opt(options, "num_streams", 1)))):
                ctx = (self.engine.create_execution_context(config) if config is not None
                       else self.engine.create_execution_context())
                if ctx is None:
                    raise RuntimeError("create_execution_context returned None (out of GPU memory?)")
                slots.append(ExecSlot(self.cuda, ctx, names, self.shape, self.scale, device=self.device,
                                      dynamic=self.dynamic, cuda_graph=cuda_graph and not builtin_graph))
        except Exception as e:  # CudaError, or whatever the TensorRT bindings raise
            for slot in slots:
                slot.close()
            raise _error(f"TensorRT could not set up execution on CUDA device {self.device}: "
                         f"{type(e).__name__}: {e}") from e
        return SlotPool(slots)

    def save_runtime_cache(self) -> None:
        """Persist the RTX JIT kernel cache once, after the first frame compiled the kernels."""
        if self._saved.is_set() or self._rtcache is None or self._rtcache_path is None:
            return
        self._saved.set()
        try:
            atomic_write(self._rtcache_path, bytes(self._rtcache.serialize()))
        except Exception as e:  # noqa: BLE001
            log.warning("espcn: could not save TensorRT runtime cache %s (%s)", self._rtcache_path, e)


_runners: OrderedDict[tuple, _Runner] = OrderedDict()
_runners_lock = threading.Lock()


def shared_runner(trt: ModuleType, model, shape: tuple[int, int], options, gpu: GpuInfo,
                  device: int) -> _Runner:
    """The process-wide runner for this engine key and run options, created on first use.
    Creation happens under the lock, so concurrent Upscale calls build and load once."""
    key = make_key(model, shape, options, trt, gpu)
    rkey = (key, device, max(1, int(_opt(options, "num_streams", 1))), bool(_opt(options, "cuda_graph", False)),
            str(EngineCache(_opt(options, "cache_dir", "") or None).directory))
    with _runners_lock:
        runner = _runners.get(rkey)
        if runner is None:
            runner = _runners[rkey] = _Runner(trt, model, shape, options, gpu, device)
            while len(_runners) > MAX_RUNNERS:
                _runners.popitem(last=False)  # freed when its last TrtBackend goes
        _runners.move_to_end(rkey)
    return runner


def clear_runners() -> None:
    """Forget every shared runner (each is freed once no TrtBackend uses it)."""
    with _runners_lock:
        _runners.clear()


class TrtBackend:
    """Backend protocol implementation on TensorRT: `scale` and a thread-safe `run(lr)`.
    A light handle on the shared runner of its engine."""

    def __init__(self, model, shape: tuple[int, int], options=None) -> None:
        device = int(_opt(options, "device_id", 0))
        ok, why = trt_available(device_id=device)
        if not ok:
            raise _error(f'backend="trt" is unavailable: {why}')
        trt, _ = import_trt()
        gpu, _ = probe_gpu(device)
        self.scale = int(model.scale)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dynamic = not bool(_opt(options, "static_shape", True))
        self._runner: _Runner | None = shared_runner(trt, model, self.shape, options, gpu, device)

    def _call(self, fn):
        """Run `fn(slot)` on a borrowed slot; every failure becomes the user-facing error."""
        runner = self._runner
        if runner is None:
            raise _error("this TensorRT backend was closed")
        try:
            result = runner.pool.run(fn)
        except ValueError as e:
            raise _error(str(e)) from e
        except Exception as e:  # CudaError, a failed enqueue, whatever the bindings raise
            raise _error(f"TensorRT inference failed: {type(e).__name__}: {e}") from e
        runner.save_runtime_cache()
        return result

    def run(self, lr: np.ndarray) -> np.ndarray:
        """float32 (H, W) LR tile -> float32 (H*scale, W*scale). Thread-safe."""
        return self._call(lambda slot: slot.infer(lr))

    def close(self) -> None:
        """Stop using the shared runner. Its GPU memory is freed once no backend uses it and it
        has left the process cache (`clear_runners`, or evicted by newer engines)."""
        self._runner = None


def _close_slots(slots: list) -> None:
    """Release every slot's CUDA resources (also runs when a runner is garbage-collected)."""
    for slot in slots:
        slot.close()
