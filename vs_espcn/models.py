"""Model registry: a model name or ONNX path -> `ModelInfo` (scale, receptive radius, metadata).

The plugin needs three facts about a network before it builds a graph: its scale (from the
`scale` metadata of the ONNX contract), how many LR pixels of context each output pixel needs
(the receptive radius, computed from the Conv nodes so any ESPCN-shaped ONNX works) and a
content hash (engine caches and session caches key on it). Parsing is cached per (path, mtime).

Before anything is read the path must be a regular file of at most `MAX_MODEL_MIB` (shipped
models are ~100 KB; a mistyped path to a video or a disk image is refused in microseconds instead
of being read whole into memory). Paths are taken as the OS gives them: a file name that is not
UTF-8 (a `str` with surrogate escapes, or `bytes`) loads like any other, and error texts show it
escaped (`repr`), so they stay printable; a NUL byte is refused with the plugin's error.
"""
from __future__ import annotations

import hashlib
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

import vapoursynth as vs

SCALES = (2, 3, 4)
MODEL_DIR = Path(__file__).resolve().parent / "models"
X2_ONLY = {"anime": "espcn_x2_anime.onnx",  # line art, cartoons, anime frames
           "manga": "espcn_x2_manga.onnx"}  # black-and-white manga with screentone
_NAMED = ("", "natural", *X2_ONLY)
NAMES_HELP = 'use model="" / "natural" / "anime" / "manga" or a path to an ONNX file'

MAX_MODEL_MIB = 256  # generous: an ESPCN is ~100 KB, the largest sane conv net a few tens of MB

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
    """Path of a shipped model: natural x2/x3/x4, or the x2 anime (line-art) or manga file."""
    if model in X2_ONLY:
        return MODEL_DIR / X2_ONLY[model]
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


CONTRACT = "expected one float32 input [N,1,H,W] with dynamic H/W and one output [N,1,H*r,W*r]"
PROBE = 8  # LR side of the symbolic shape check (small: only shapes are inferred, nothing runs)


def _dims(value_info) -> list[int | str | None] | None:
    """A graph input/output's dims: int when fixed, its symbol name when symbolic, None when unknown;
    None for the whole list when the rank itself is unknown."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]


def _check_io(graph, where: str) -> None:
    """Exactly one non-initializer input of rank 4, channel 1, H/W not fixed; exactly one output."""
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise _error(f"model {where} has {len(inputs)} data inputs ({names})", CONTRACT)
    dims = _dims(inputs[0])
    if dims is None or len(dims) != 4:
        raise _error(f"model {where} input {inputs[0].name!r} has rank "
                     f"{'unknown' if dims is None else len(dims)}", CONTRACT)
    if dims[1] != 1:
        raise _error(f"model {where} input {inputs[0].name!r} has {dims[1]} channels", CONTRACT)
    if isinstance(dims[2], int) or isinstance(dims[3], int):
        raise _error(f"model {where} has a fixed input size {dims[2]}x{dims[3]}",
                     CONTRACT + " (export with dynamic axes)")
    if len(graph.output) != 1:
        raise _error(f"model {where} has {len(graph.output)} outputs", CONTRACT)


def _check_scale(proto, scale: int, where: str) -> None:
    """The network really upscales by `scale`: every DepthToSpace blocksize (their product) equals
    it, and where ONNX shape inference resolves the output of an 8x8 input it is [1,1,8r,8r]."""
    import onnx

    blocks = [next((a.i for a in n.attribute if a.name == "blocksize"), 0)
              for n in proto.graph.node if n.op_type == "DepthToSpace"]
    if blocks and (len(blocks) > 1 or blocks[0] != scale):
        raise _error(f"model {where} is labelled scale {scale} but its DepthToSpace blocksize is "
                     f"{' x '.join(map(str, blocks))}", "the 'scale' metadata must match the network")
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    inits = {t.name for t in probe.graph.initializer}
    data = next(i for i in probe.graph.input if i.name not in inits)
    for d, v in zip(data.type.tensor_type.shape.dim, (1, 1, PROBE, PROBE)):
        d.Clear()
        d.dim_value = v
    probe.graph.output[0].type.tensor_type.ClearField("shape")  # let inference fill it
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=True)
    except Exception:  # an op shape inference cannot follow: leave the check to the backend
        return
    got = _dims(inferred.graph.output[0])
    if got is None or not all(isinstance(d, int) for d in got):
        return
    want = [1, 1, PROBE * scale, PROBE * scale]
    if got != want:
        raise _error(f"model {where} is labelled scale {scale} but maps a [1,1,{PROBE},{PROBE}] input to "
                     f"{got} (expected {want})", "the 'scale' metadata must match the network; " + CONTRACT)


def _too_large(shown: str, size: int) -> vs.Error:
    """The error for a model file over MAX_MODEL_MIB."""
    return _error(f"model file {shown} is {size} bytes ({size / 2**20:.1f} MiB), larger than the "
                  f"{MAX_MODEL_MIB} MiB limit",
                  "ESPCN models are ~100 KB: pass an ONNX file exported by the trainer")


def _read(path: Path) -> bytes:
    """The file's bytes, refusing more than MAX_MODEL_MIB even when it grew after the stat."""
    limit = MAX_MODEL_MIB * 2**20
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise _error(f"cannot read model file {str(path)!r} ({exc.strerror or exc})",
                     "pass a readable ONNX file exported by the trainer") from None
    if len(data) > limit:
        raise _too_large(repr(str(path)), len(data))
    return data


def _parse(path: Path) -> ModelInfo:
    """Read an ONNX file and check it keeps the ONNX contract (scale metadata, one dynamic
    single-channel input, one output, a network that really upscales by that scale), so a
    mismatched model fails when the graph is built, not at the first frame."""
    import onnx  # lazy: only needed when a graph is built

    data = _read(path)
    try:
        proto = onnx.load_from_string(data)
    except MemoryError:
        raise
    except Exception as exc:  # protobuf raises several types on garbage
        raise _error(f"model file {str(path)!r} is not a valid ONNX file ({type(exc).__name__})",
                     "pass an ONNX file exported by the trainer") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    where = repr(str(path))
    if not proto.graph.node:
        raise _error(f"model {where} has no nodes", CONTRACT)
    try:
        model_scale = int(meta["scale"])
    except (KeyError, ValueError):
        raise _error(f"model {where} has no valid 'scale' metadata",
                     "export it with the trainer (metadata_props scale = 2, 3 or 4)") from None
    if model_scale not in SCALES:
        raise _error(f"model {where} has scale {model_scale}", "supported scales are 2, 3, 4")
    _check_io(proto.graph, where)
    _check_scale(proto, model_scale, where)
    return ModelInfo(path=path, scale=model_scale, name=meta.get("name", _printable(path.stem)),
                     sha256=hashlib.sha256(data).hexdigest(),
                     radius=receptive_radius(proto.graph), metadata=meta)


def _printable(text: str) -> str:
    """`text` with the undecodable bytes of a non-UTF-8 file name (surrogate escapes) shown as U+FFFD,
    for names that end up in messages, logs and engine file names."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def load(path: str | bytes | os.PathLike) -> ModelInfo:
    """Parse `path` into a ModelInfo, cached per (resolved path, mtime, size). Only a regular file
    of at most MAX_MODEL_MIB is read; `bytes` and non-UTF-8 names are fine (os.fsdecode)."""
    name = os.fsdecode(path)  # bytes -> str with surrogate escapes, as the OS names the file
    if "\0" in name:
        raise _error(f"model path {name!r} contains a NUL byte",
                     "pass the path of an ONNX file (no file name can contain NUL)")
    try:
        p = Path(name).expanduser().resolve()
        st = p.stat()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop in resolve()
        raise _error(f"model file {name!r} not found",
                     NAMES_HELP) from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a pipe" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise _error(f"model path {name!r} is not a file ({kind})", "pass a path to an ONNX file")
    if st.st_size > MAX_MODEL_MIB * 2**20:
        raise _too_large(repr(name), st.st_size)
    key = (str(p), st.st_mtime_ns, st.st_size)
    with _lock:
        info = _cache.get(key)
    if info is None:
        try:
            info = _parse(p)
        except MemoryError:  # an empty-message MemoryError must never reach the user
            raise _error(f"out of memory while reading model file {name!r} ({st.st_size / 2**20:.1f} MiB)",
                         "free memory or pass a smaller ONNX file exported by the trainer") from None
        with _lock:
            _cache[key] = info
    return info


def resolve(model: str, scale: int | None) -> ModelInfo:
    """Map the `model`/`scale` arguments of Upscale to a ModelInfo, or raise vs.Error."""
    if scale is not None and scale not in SCALES:
        raise _error(f"scale={scale} is not supported", "scale must be 2, 3 or 4")
    if model in _NAMED:
        if model in X2_ONLY and scale not in (None, 2):
            raise _error(f'model="{model}" has no x{scale} weights', f'model="{model}" supports scale=2 only')
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
