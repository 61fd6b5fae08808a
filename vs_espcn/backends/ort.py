"""ONNX Runtime CPU backend: one InferenceSession per (model, options), shared and thread-safe.

`InferenceSession.run` is documented thread-safe and releases the GIL, so several VapourSynth
frame threads can run the same session at once; sessions are cached per (model file hash,
options) so that every Upscale call on the same model reuses one set of weights and kernels, and
the cache holds them weakly, so a session goes when the last graph using it does. The model is
passed as bytes (any file name works, UTF-8 or not), and ONNX Runtime's telemetry is switched off
before it is first imported: a video filter must not record the user's machine.
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING

import numpy as np
import vapoursynth as vs

from vs_espcn.backends import OrtOptions

if TYPE_CHECKING:
    from vs_espcn.models import ModelInfo

_sessions: "weakref.WeakValueDictionary[tuple[str, str, int], object]" = weakref.WeakValueDictionary()
_lock = threading.Lock()


def _new_session(model: "ModelInfo", options: OrtOptions):
    """Create a CPU InferenceSession; a corrupt or incompatible model becomes a vs.Error."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # read once, when onnxruntime is imported
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise vs.Error(f"espcn.Upscale: onnxruntime is not installed ({exc}); "
                       "pip install onnxruntime, or use backend=\"ov\" (OpenVINO) or \"trt\" (TensorRT)") from None
    ort.disable_telemetry_events()  # in case the host imported onnxruntime before us
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.path.read_bytes(), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise vs.Error(f"espcn.Upscale: onnxruntime cannot load model {model.path.name!r} "
                       f"({_first_line(exc)}); {HINT}") from None
    _probe(sess, model)
    return sess


HINT = "pass an ONNX file exported by the trainer (opset 17, input 'lr' [N,1,H,W])"
PROBE = (1, 1, 9, 7)  # tiny odd, non-square trial input: cheap; any ESPCN-shaped network accepts it


def _first_line(exc: Exception) -> str:
    """`Type: first line of the message` (onnxruntime messages can be pages long)."""
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"


def _probe(sess, model: "ModelInfo") -> None:
    """Run the session once on a tiny input so a model that cannot run, or whose output is not
    input x scale, fails when the graph is built instead of at the first frame."""
    name = sess.get_inputs()[0].name
    try:
        out = sess.run(None, {name: np.zeros(PROBE, np.float32)})[0]
    except Exception as exc:
        raise vs.Error(f"espcn.Upscale: model {str(model.path)!r} fails on a {PROBE[2]}x{PROBE[3]} "
                       f"input ({_first_line(exc)}); {HINT}") from None
    want = (1, 1, PROBE[2] * model.scale, PROBE[3] * model.scale)
    if tuple(out.shape) != want or out.dtype != np.float32:
        raise vs.Error(f"espcn.Upscale: model {str(model.path)!r} maps a {PROBE} input to "
                       f"{out.dtype}{tuple(out.shape)}, expected float32{want} for scale {model.scale}; "
                       f"{HINT}")


def session(model: "ModelInfo", options: OrtOptions):
    """The shared session for (model, options), created on first use."""
    key = (str(model.path), model.sha256, options.intra_threads())  # the only option a session uses
    with _lock:
        sess = _sessions.get(key)
        if sess is None:
            sess = _new_session(model, options)
            _sessions[key] = sess
    return sess


class OrtBackend:
    """Backend protocol on onnxruntime's CPU provider (dynamic shapes: any tile size works)."""

    def __init__(self, model: "ModelInfo", shape: tuple[int, int], options: OrtOptions) -> None:
        self.scale = model.scale
        self.shape = tuple(shape)
        self._session = session(model, options)
        self._input = self._session.get_inputs()[0].name
        self._outputs = [self._session.get_outputs()[0].name]

    def run(self, lr: np.ndarray) -> np.ndarray:
        """float32 (H, W) -> the network's output plane (H*scale, W*scale) as ORT returns it, no copy
        (the frame path checks its shape: a reshape here could hide a wrong one)."""
        h, w = lr.shape
        out = self._session.run(self._outputs, {self._input: lr.reshape(1, 1, h, w)})[0]
        return out[0, 0] if out.ndim == 4 and out.shape[:2] == (1, 1) else out
