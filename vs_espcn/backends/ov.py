"""OpenVINO CPU backend: oneDNN's bf16 kernels (AVX512_BF16 / AMX) or fp32, static tile shape.

OpenVINO is driven through its C API (`ov_capi`), so it works beside vs-mlrt's `ov` plugin, whose own
libopenvino vspipe loads first. Precision is always set explicitly (`INFERENCE_PRECISION_HINT`: OpenVINO
would otherwise pick bf16 by itself on such a CPU). For bf16 the network is centred first
(`vs_espcn.centered`: it takes x - 0.5 and returns y - 0.5), which halves bf16's error on the [0, 1] input
and output; `offset` tells the frame path, which shifts in fp32 while it converts the plane. One compiled
model per (model hash, tile shape, precision, threads, streams), shared by every Upscale call and held
weakly (freed with the last graph); each frame leases an infer request from a pool of at most `streams`,
whose input and output buffers are its own.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import vapoursynth as vs

from vs_espcn import centered
from vs_espcn.backends import OvOptions

if TYPE_CHECKING:
    from vs_espcn.models import ModelInfo

log = logging.getLogger("vs_espcn")
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def rest_precision(precision: str) -> str:
    """The precision of the layers OpenVINO runs in float: an int8 model's unquantized layers run in bf16
    where the CPU has it."""
    from vs_espcn import precision as prec

    if precision != "int8":
        return precision
    return "bf16" if prec.cpu_can("bf16") else "fp32"
HINT = "pass an ONNX file exported by the trainer (opset 17, input 'lr' [N,1,H,W])"


class _Compiled:
    """A compiled model and whether its input/output are centred (weak-referenceable)."""

    def __init__(self, model: object, centred: bool) -> None:
        self.model, self.centred = model, centred


_compiled: "weakref.WeakValueDictionary[tuple, _Compiled]" = weakref.WeakValueDictionary()
_lock = threading.Lock()
_uncentred: set[str] = set()  # models already reported as not centrable (one warning per model)


@functools.cache
def available() -> tuple[bool, str]:
    """Can OpenVINO's C library be loaded (the reason when not)? Asked once per process."""
    from vs_espcn.backends import ov_capi

    try:
        ov_capi.library()
    except OSError as exc:
        return False, str(exc)[:300]
    return True, ""


def _onnx_for(model: "ModelInfo", precision: str) -> tuple[bytes, bool]:
    """The ONNX bytes to compile for `precision` (centred for bf16 when the graph allows; "fp32" = as
    the file is) and whether they are centred."""
    data = model.path.read_bytes()
    if precision == "fp32":
        return data, False
    centred_bytes = centered.centre(data)
    if centred_bytes is None and model.sha256 not in _uncentred:
        _uncentred.add(model.sha256)
        log.warning("espcn.Upscale: %s is not ESPCN-shaped enough to centre; %s runs uncentred",
                    model.path.name, precision)
    return centred_bytes or data, centred_bytes is not None


def _compile(model: "ModelInfo", shape: tuple[int, int], options: OvOptions) -> _Compiled:
    """Read, reshape to the static tile shape and compile for the CPU; errors become vs.Error."""
    from vs_espcn.backends import ov_capi

    rest = rest_precision(options.precision)
    # int8 models run uncentred: measured through the plugin, centring cost their bf16 layers up to 0.35 dB
    # (the line-art twin: -0.64 centred, -0.29 uncentred; x2 -0.089 / -0.076 on Set5)
    data, is_centred = _onnx_for(model, rest if options.precision != "int8" else "fp32")
    config = {"INFERENCE_PRECISION_HINT": OV_PRECISION[rest],
              "NUM_STREAMS": str(int(options.streams)), "PERFORMANCE_HINT": "THROUGHPUT"}
    if options.threads:
        config["INFERENCE_NUM_THREADS"] = str(int(options.threads))
    try:
        return _Compiled(ov_capi.CompiledModel(data, shape, config), is_centred)
    except ov_capi.OvError as exc:
        raise vs.Error(f"espcn.Upscale: OpenVINO cannot compile model {model.path.name!r} ({exc}); "
                       f"{HINT}") from None


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
    """Backend protocol on OpenVINO's CPU plugin for tiles of exactly `shape`.

    Infer requests come from a pool of at most `streams` (made as needed; the first at graph build, so a
    model that cannot run fails there). The frame path leases one per frame (`lease`), runs every tile on
    it and reads each output as a view of the request's buffer before giving it back: no 5.7 MB array to
    allocate per 720x480 frame, and memory follows `num_streams`, not how many threads VapourSynth has.
    (A request per thread would not: VapourSynth's worker threads even get a fresh Python thread state
    per callback, so a `threading.local` made a new request, and its buffers, for every frame.)"""

    def __init__(self, model: "ModelInfo", shape: tuple[int, int], options: OvOptions) -> None:
        self.scale = model.scale
        self.shape = tuple(shape)
        self.precision = options.precision
        entry = self._entry = compiled(model, self.shape, options)  # held: the cache keeps it weakly
        self.offset = centered.SHIFT if entry.centred else 0.0  # the frame path shifts in and out
        self._name = model.path.name
        self._limit = max(1, options.streams)
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        self._made, self._made_lock = 0, threading.Lock()
        self._pool.put(self._new_request())  # fail at graph build (e.g. an output that is not [1,1,H*r,W*r])

    def _new_request(self):
        """A new infer request (counted against the pool's limit)."""
        try:
            request = self._entry.model.request(self.shape, self.scale)
        except Exception as exc:
            raise vs.Error(f"espcn.Upscale: OpenVINO cannot run model {self._name!r} on a "
                           f"{self.shape[1]}x{self.shape[0]} tile ({exc}); {HINT}") from None
        self._made += 1
        return request

    def _take(self):
        """A free request: from the pool, or a new one while fewer than `streams` exist, else wait."""
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._made_lock:
            if self._made < self._limit:
                return self._new_request()
        return self._pool.get()

    @contextlib.contextmanager
    def lease(self) -> Iterator[Callable[[np.ndarray], np.ndarray]]:
        """One request for the block: yields `run(lr)`, whose output is a view valid inside the block."""
        request = self._take()
        try:
            yield lambda lr: self._infer(request, lr)
        finally:
            self._pool.put(request)

    @staticmethod
    def _infer(request, lr: np.ndarray) -> np.ndarray:
        """float32 (H, W) values minus `offset` -> a view of (H*scale, W*scale) values minus `offset`."""
        np.copyto(request.input[0, 0], lr)
        request.infer()
        return request.output[0, 0]

    def run(self, lr: np.ndarray) -> np.ndarray:
        """The protocol's run, for callers without a lease: a new array."""
        with self.lease() as run:
            return run(lr).copy()
