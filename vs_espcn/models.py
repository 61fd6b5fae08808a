"""Model registry: a model name or ONNX path -> `ModelInfo` (scale, receptive radius, metadata).

The plugin needs three facts about a network before it builds a graph: its scale (from the
`scale` metadata of the ONNX contract), how many LR pixels of context each output pixel needs
(the receptive radius, computed from the Conv nodes so any ESPCN-shaped ONNX works) and a
content hash (engine caches and session caches key on it). Parsing is cached per (path, mtime).
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import vapoursynth as vs

SCALES = (2, 3, 4)
MODEL_DIR = Path(__file__).resolve().parent / "models"
_NAMED = ("", "natural", "anime")

_cache: dict[tuple[str, int, int], "ModelInfo"] = {}
_lock = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What the plugin knows about one ONNX file (immutable, cheap to pass around)."""

    path: Path
    scale: int
    name: str
    sha256: str
    radius: int
    metadata: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


def _error(problem: str, supported: str) -> vs.Error:
    """Build the plugin's user-facing error."""
    return vs.Error(f"espcn.Upscale: {problem}; {supported}")


def shipped_path(model: str, scale: int) -> Path:
    """Path of a shipped model: natural x2/x3/x4 or the anime (line-art) x2."""
    if model == "anime":
        return MODEL_DIR / "espcn_x2_anime.onnx"
    return MODEL_DIR / f"espcn_x{scale}.onnx"


def _conv_radius(node, initializers: dict) -> int:
    """LR pixels of context one Conv node adds: (k - 1) * dilation // 2 along its widest axis."""
    attrs = {a.name: a for a in node.attribute}
    if "kernel_shape" in attrs:
        kernel = list(attrs["kernel_shape"].ints)
    else:
        dims = initializers.get(node.input[1]) if len(node.input) > 1 else None
        kernel = list(dims[2:]) if dims is not None else [1]
    dil = list(attrs["dilations"].ints) if "dilations" in attrs else [1] * len(kernel)
    return max(((k - 1) * d) // 2 for k, d in zip(kernel, dil)) if kernel else 0


def receptive_radius(graph) -> int:
    """Sum of the Conv nodes' half-kernels in LR pixels (5,3,3 -> 4), per DESIGN.md."""
    inits = {t.name: list(t.dims) for t in graph.initializer}
    return sum(_conv_radius(n, inits) for n in graph.node if n.op_type == "Conv")


def _parse(path: Path) -> ModelInfo:
    """Read an ONNX file and check it keeps the ONNX contract (scale metadata, one input)."""
    import onnx  # lazy: only needed when a graph is built

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _error(f"cannot read model file {str(path)!r} ({exc.strerror})",
                     "pass a readable ONNX file exported by the trainer") from None
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises several types on garbage
        raise _error(f"model file {str(path)!r} is not a valid ONNX file ({type(exc).__name__})",
                     "pass an ONNX file exported by the trainer") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if len(proto.graph.input) - len(proto.graph.initializer) > 1 or not proto.graph.node:
        raise _error(f"model {str(path)!r} is not an ESPCN-shaped network",
                     "expected one input 'lr' [N,1,H,W] and one output [N,1,H*r,W*r]")
    try:
        model_scale = int(meta["scale"])
    except (KeyError, ValueError):
        raise _error(f"model {str(path)!r} has no valid 'scale' metadata",
                     "export it with the trainer (metadata_props scale = 2, 3 or 4)") from None
    if model_scale not in SCALES:
        raise _error(f"model {str(path)!r} has scale {model_scale}", "supported scales are 2, 3, 4")
    return ModelInfo(path=path, scale=model_scale, name=meta.get("name", path.stem),
                     sha256=hashlib.sha256(data).hexdigest(),
                     radius=receptive_radius(proto.graph), metadata=meta)


def load(path: str | os.PathLike) -> ModelInfo:
    """Parse `path` into a ModelInfo, cached per (resolved path, mtime, size)."""
    p = Path(path).expanduser().resolve()
    try:
        st = p.stat()
    except OSError:
        raise _error(f"model file {str(path)!r} not found",
                     'use model="" / "natural" / "anime" or a path to an ONNX file') from None
    if not p.is_file():
        raise _error(f"model path {str(path)!r} is not a file", "pass a path to an ONNX file")
    key = (str(p), st.st_mtime_ns, st.st_size)
    with _lock:
        info = _cache.get(key)
    if info is None:
        info = _parse(p)
        with _lock:
            _cache[key] = info
    return info


def resolve(model: str, scale: int | None) -> ModelInfo:
    """Map the `model`/`scale` arguments of Upscale to a ModelInfo, or raise vs.Error."""
    if scale is not None and scale not in SCALES:
        raise _error(f"scale={scale} is not supported", "scale must be 2, 3 or 4")
    if model in _NAMED:
        if model == "anime" and scale not in (None, 2):
            raise _error(f'model="anime" has no x{scale} weights', 'model="anime" supports scale=2 only')
        path = shipped_path(model, scale or 2)
        if not path.is_file():
            raise _error(f"shipped model {path.name} is missing from {MODEL_DIR}",
                         "reinstall vs-espcn or pass model=<path to an ONNX exported by the trainer>")
        return load(path)
    info = load(model)
    if scale is not None and scale != info.scale:
        raise _error(f"scale={scale} does not match the model's scale {info.scale} ({model!r})",
                     "omit scale or pass the model's own scale")
    return info
