"""OpenVINO CPU backend: oneDNN's bf16 kernels (AVX512_BF16 / AMX) or fp32, static tile shape.

Precision is always set explicitly (`INFERENCE_PRECISION_HINT`: OpenVINO would otherwise pick bf16 by
itself on such a CPU). For bf16 the network is centred first (`vs_espcn.centered`: it takes x - 0.5 and
returns y - 0.5), which halves bf16's error on the [0, 1] input and output; the shift is undone here in
fp32. One compiled model per (model hash, tile shape, precision, threads, streams), shared by every
Upscale call; each concurrent `run` takes its own infer request from a pool (`infer` releases the GIL),
so the frames in flight overlap. The model is read from bytes, never from a path.
"""
from __future__ import annotations

import functools
import logging
import queue
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import vapoursynth as vs

from vs_espcn import centered

if TYPE_CHECKING:
    from vs_espcn.models import ModelInfo

log = logging.getLogger("vs_espcn")
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
HINT = "pass an ONNX file exported by the trainer (opset 17, input 'lr' [N,1,H,W])"


@dataclass(frozen=True, kw_only=True)
class OvOptions:
    """`threads`: OpenVINO CPU threads in all (0 = OpenVINO's default, every core); `streams`: infer
    requests that run at once (the frames in flight); `precision`: "fp32" or "bf16" (resolved)."""

    threads: int = 0
    streams: int = 1
    precision: str = "fp32"


@dataclass(frozen=True)
class _Compiled:
    """A compiled model and whether its input/output are centred."""

    model: object
    centred: bool


_compiled: "weakref.WeakValueDictionary[tuple, _Compiled]" = weakref.WeakValueDictionary()  # freed with the last graph
_lock = threading.Lock()


@functools.cache
def available() -> tuple[bool, str]:
    """Is the `openvino` package importable (the reason when not)? Asked once per process.

    OpenVINO's Python module refuses to load when another build of libopenvino is already in the
    process: vs-mlrt's `ov` plugin ships one, and vspipe autoloads it before the script runs. (In plain
    Python, `import openvino` before the first `vs.core` avoids it; vs-mlrt's plugin then uses ours.)"""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        text = str(exc)
        if "mismatches with OpenVINO Runtime" in text or "versions_compatible" in text:
            return False, ("another libopenvino is already loaded in this process (vs-mlrt's ov plugin); "
                           "import openvino before the first vs.core, or remove vapoursynth-mlrt-ov")
        return False, f"openvino is not installed ({text.splitlines()[0][:200]}); pip install openvino"
    return True, ""


def _read(model: "ModelInfo", precision: str):
    """The OpenVINO model for `precision` (centred for bf16 when the graph allows) and whether it is."""
    import openvino as ov

    data = model.path.read_bytes()
    centred_bytes = centered.centre(data) if precision != "fp32" else None
    if precision != "fp32" and centred_bytes is None:
        log.warning("espcn.Upscale: %s is not ESPCN-shaped enough to centre; %s runs uncentred",
                    model.path.name, precision)
    return ov.Core().read_model(centred_bytes or data), centred_bytes is not None


def _compile(model: "ModelInfo", shape: tuple[int, int], options: OvOptions) -> _Compiled:
    """Read, reshape to the static tile shape and compile for the CPU; errors become vs.Error."""
    import openvino as ov

    try:
        net, is_centred = _read(model, options.precision)
        net.reshape([1, 1, *shape])
        config = {"INFERENCE_PRECISION_HINT": OV_PRECISION[options.precision],
                  "NUM_STREAMS": int(options.streams), "PERFORMANCE_HINT": "THROUGHPUT"}
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = int(options.threads)
        compiled = ov.Core().compile_model(net, "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError and its own types on bad models
        text = (str(exc).splitlines() or [""])[0][:300]
        raise vs.Error(f"espcn.Upscale: OpenVINO cannot compile model {model.path.name!r} "
                       f"({type(exc).__name__}: {text}); {HINT}") from None
    return _Compiled(compiled, is_centred)


def compiled(model: "ModelInfo", shape: tuple[int, int], options: OvOptions) -> _Compiled:
    """The shared compiled model for (model, shape, options), compiled on first use."""
    key = (model.sha256, tuple(shape), options)
    with _lock:
        hit = _compiled.get(key)
        if hit is None:
            hit = _compile(model, shape, options)
            _compiled[key] = hit
    return hit


class OvBackend:
    """Backend protocol on OpenVINO's CPU plugin for tiles of exactly `shape`."""

    def __init__(self, model: "ModelInfo", shape: tuple[int, int], options: OvOptions) -> None:
        self.scale = model.scale
        self.shape = tuple(shape)
        self.precision = options.precision
        entry = self._entry = compiled(model, self.shape, options)  # held: the cache keeps it weakly
        self._centred = entry.centred
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(max(1, options.streams)):
            self._requests.put(entry.model.create_infer_request())

    def run(self, lr: np.ndarray) -> np.ndarray:
        """float32 (H, W) -> new float32 (H*scale, W*scale) array."""
        h, w = lr.shape
        x = (lr - np.float32(centered.SHIFT)) if self._centred else lr
        request = self._requests.get()
        try:
            request.infer({0: x.reshape(1, 1, h, w)})
            out = request.get_output_tensor(0).data
            out = out[0, 0] if out.ndim == 4 and out.shape[:2] == (1, 1) else out  # shape checked by the caller
            # a new array either way: the request's buffer is reused by the next frame
            return out + np.float32(centered.SHIFT) if self._centred else out.copy()
        finally:
            self._requests.put(request)
