"""OpenVINO through its C API (ctypes): read, reshape, compile, infer. No `import openvino`.

Why not the Python module: OpenVINO's Python module refuses to load when another build of libopenvino
is already in the process, and vs-mlrt's `ov` plugin ships one that vspipe autoloads before any
script runs. The C API has no such check, so this module binds to whichever build is there: the
libopenvino_c beside an already loaded libopenvino (vs-mlrt's folder ships both), else the one in the
`openvino` wheel. Every call releases the GIL (ctypes does), so infer requests of several frames run
at once. A failing call raises `OvError` with OpenVINO's own message.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
from pathlib import Path

OK = 0
F32 = 4  # ov_element_type_e


class OvError(RuntimeError):
    """An OpenVINO C API call failed."""


class _Dim(ctypes.Structure):
    _fields_ = [("min", ctypes.c_int64), ("max", ctypes.c_int64)]


class _PartialShape(ctypes.Structure):
    _fields_ = [("rank", _Dim), ("dims", ctypes.POINTER(_Dim))]


class _Shape(ctypes.Structure):
    _fields_ = [("rank", ctypes.c_int64), ("dims", ctypes.POINTER(ctypes.c_int64))]


class _Property(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("value", ctypes.c_char_p)]


P = ctypes.c_void_p
_SIGNATURES = {
    "ov_core_create": [ctypes.POINTER(P)],
    "ov_core_free": [P],
    "ov_core_read_model_from_memory_buffer": [P, ctypes.c_char_p, ctypes.c_size_t, P, ctypes.POINTER(P)],
    "ov_model_free": [P],
    "ov_partial_shape_create_static": [ctypes.c_int64, ctypes.POINTER(ctypes.c_int64),
                                       ctypes.POINTER(_PartialShape)],
    "ov_partial_shape_free": [ctypes.POINTER(_PartialShape)],
    "ov_model_reshape_single_input": [P, _PartialShape],
    "ov_core_compile_model_props": [P, P, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Property),
                                    ctypes.POINTER(P)],
    "ov_compiled_model_free": [P],
    "ov_compiled_model_create_infer_request": [P, ctypes.POINTER(P)],
    "ov_infer_request_free": [P],
    "ov_shape_create": [ctypes.c_int64, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(_Shape)],
    "ov_shape_free": [ctypes.POINTER(_Shape)],
    "ov_tensor_create_from_host_ptr": [ctypes.c_int, _Shape, P, ctypes.POINTER(P)],
    "ov_tensor_free": [P],
    "ov_tensor_data": [P, ctypes.POINTER(P)],
    "ov_infer_request_set_input_tensor_by_index": [P, ctypes.c_size_t, P],
    "ov_infer_request_set_output_tensor_by_index": [P, ctypes.c_size_t, P],
    "ov_infer_request_infer": [P],
}


def _loaded_libopenvino() -> Path | None:
    """The folder of a libopenvino.so.* already mapped into this process, if any."""
    try:
        maps = Path("/proc/self/maps").read_text(errors="replace")
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[-1]
        if Path(path).name.startswith("libopenvino.so"):
            return Path(path).parent
    return None


def _wheel_libs() -> Path | None:
    """The `openvino` wheel's libs/ folder (found without importing the package)."""
    spec = importlib.util.find_spec("openvino")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "libs"


def _candidates() -> list[Path]:
    """libopenvino_c files to try: only those beside an already loaded libopenvino (another build's C API
    would pull a second libopenvino into the process), else the `openvino` wheel's."""
    loaded = _loaded_libopenvino()
    found = []
    for folder in ((loaded,) if loaded is not None else (_wheel_libs(),)):
        if folder is not None and folder.is_dir():
            found += sorted(folder.glob("libopenvino_c.so*"), key=lambda p: len(p.name), reverse=True)
    return found


@functools.cache
def library() -> ctypes.CDLL:
    """The bound C API (cached per process); OSError when none can be loaded."""
    errors = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        missing = [name for name in (*_SIGNATURES, "ov_get_last_err_msg") if not hasattr(lib, name)]
        if missing:  # an OpenVINO older than the binding (ov_core_compile_model_props is 2026-era)
            errors.append(f"{path}: no {', '.join(missing[:3])} (OpenVINO too old; pip install 'openvino>=2026.4')")
            continue
        for name, args in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, (None if name.endswith("_free") else ctypes.c_int)
        lib.ov_get_last_err_msg.restype = ctypes.c_char_p
        return lib
    raise OSError("no OpenVINO C library found (pip install openvino)" + (": " + "; ".join(errors) if errors else ""))


def call(name: str, *args) -> None:
    """Call C API function `name`; raise OvError with OpenVINO's message unless it returns OK."""
    lib = library()
    status = getattr(lib, name)(*args)
    if status != OK:
        message = (lib.ov_get_last_err_msg() or b"").decode("utf-8", "replace").strip()
        raise OvError(f"{name} failed ({status}): {message.splitlines()[-1] if message else 'no message'}")


def _new(name: str, *args) -> P:
    """Call a constructor-style function whose last argument is the out-pointer; return it."""
    out = P()
    call(name, *args, ctypes.byref(out))
    return out


class CompiledModel:
    """A model read from ONNX bytes, reshaped to a static [1, 1, H, W] input and compiled for the CPU."""

    def __init__(self, onnx: bytes, shape: tuple[int, int], properties: dict[str, str]) -> None:
        lib = library()
        self._core = _new("ov_core_create")
        self._model = self._compiled = None
        try:
            self._model = _new("ov_core_read_model_from_memory_buffer", self._core, onnx, len(onnx), None)
            dims = (ctypes.c_int64 * 4)(1, 1, *shape)
            pshape = _PartialShape()
            call("ov_partial_shape_create_static", 4, dims, ctypes.byref(pshape))
            try:
                call("ov_model_reshape_single_input", self._model, pshape)
            finally:
                lib.ov_partial_shape_free(ctypes.byref(pshape))
            props = (_Property * len(properties))(*(_Property(k.encode(), v.encode()) for k, v in properties.items()))
            self._compiled = _new("ov_core_compile_model_props", self._core, self._model, b"CPU",
                                  len(properties), props)
        except BaseException:
            self.close()
            raise

    def request(self, shape: tuple[int, int], scale: int) -> "InferRequest":
        """A new infer request with its own input and output buffers."""
        return InferRequest(self, shape, scale)

    def close(self) -> None:
        """Free the compiled model, the model and the core (idempotent)."""
        lib = library()
        for attr, free in (("_compiled", lib.ov_compiled_model_free), ("_model", lib.ov_model_free),
                           ("_core", lib.ov_core_free)):
            if getattr(self, attr, None):
                free(getattr(self, attr))
                setattr(self, attr, None)

    __del__ = close


def _tensor(array) -> P:
    """An f32 ov_tensor over a C-contiguous float32 numpy array (which must outlive it)."""
    dims = (ctypes.c_int64 * array.ndim)(*array.shape)
    shape = _Shape()
    call("ov_shape_create", array.ndim, dims, ctypes.byref(shape))
    try:
        return _new("ov_tensor_create_from_host_ptr", F32, shape, ctypes.c_void_p(array.ctypes.data))
    finally:
        library().ov_shape_free(ctypes.byref(shape))


class InferRequest:
    """One infer request whose input and output tensors wrap numpy buffers it owns (`input`, `output`)."""

    def __init__(self, owner: CompiledModel, shape: tuple[int, int], scale: int) -> None:
        import numpy as np

        h, w = shape
        self.input = np.zeros((1, 1, h, w), np.float32)
        self.output = np.zeros((1, 1, h * scale, w * scale), np.float32)
        self._owner = owner  # the compiled model must outlive its requests
        self._request = _new("ov_compiled_model_create_infer_request", owner._compiled)
        self._tensors = [_tensor(self.input), _tensor(self.output)]
        call("ov_infer_request_set_input_tensor_by_index", self._request, 0, self._tensors[0])
        call("ov_infer_request_set_output_tensor_by_index", self._request, 0, self._tensors[1])

    def infer(self) -> None:
        """Run the network from `input` into `output` (GIL released)."""
        call("ov_infer_request_infer", self._request)

    def __del__(self) -> None:
        lib = library()
        for tensor in getattr(self, "_tensors", ()):
            lib.ov_tensor_free(tensor)
        if getattr(self, "_request", None):
            lib.ov_infer_request_free(self._request)
