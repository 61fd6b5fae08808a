"""Build a serialized TensorRT engine from ESPCN ONNX bytes (no GPU memory or stream needed).

One code path for TensorRT 10, TensorRT 11 and TensorRT-RTX, chosen by feature detection:
- fp16 on TensorRT 10 ("flag" mode): weakly typed network + `BuilderFlag.FP16`, TensorRT picks
  fp16 kernels where they are faster;
- fp16 on TensorRT 11 / TensorRT-RTX ("onnx" mode, no FP16 flag exists): the ONNX is converted to
  fp16 with float32 I/O (`vs_espcn.fp16`) and built as a strongly typed network;
- fp32: the ONNX as it is.
The timing cache (TensorRT only; a no-op in TensorRT-RTX) is read from and written back to a file
beside the engine cache so later builds of other shapes are faster.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..engine_cache import atomic_write

log = logging.getLogger("vs_espcn")

Shape4 = tuple[int, int, int, int]


class BuildError(RuntimeError):
    """The ONNX could not be parsed or TensorRT refused to build it (message says which)."""


@dataclass(frozen=True)
class BuildSpec:
    """How to build: the optimization profile (min, opt, max NCHW), precision and builder options."""

    profile: tuple[Shape4, Shape4, Shape4]
    fp16: bool = True
    opt_level: int = 3
    workspace_mib: int = 0
    timing_cache: Path | None = None


def profile_for(shape: tuple[int, int], static: bool) -> tuple[Shape4, Shape4, Shape4]:
    """Profile for LR tiles of `shape` (H, W): all equal when static, else min 1x1 .. max shape
    (so a smaller plane also fits a dynamic engine)."""
    h, w = shape
    full = (1, 1, int(h), int(w))
    return (full, full, full) if static else ((1, 1, 1, 1), full, full)


def precision_mode(trt: ModuleType, fp16: bool) -> str:
    """"none" for fp32; "flag" where `BuilderFlag.FP16` exists (TensorRT <= 10); else "onnx"."""
    if not fp16:
        return "none"
    return "flag" if hasattr(trt.BuilderFlag, "FP16") else "onnx"


def make_logger(trt: ModuleType):
    """A TensorRT ILogger that forwards to the `vs_espcn` logger and remembers error lines."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg) -> None:  # noqa: A003 - TensorRT's method name
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))
                log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return _Logger()


def _network_flags(trt: ModuleType, mode: str) -> int:
    """STRONGLY_TYPED for an fp16-converted ONNX (required on TensorRT 10, harmless on 11/RTX)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return (1 << int(flag)) if (mode == "onnx" and flag is not None) else 0


def _parse(trt: ModuleType, network, logger, onnx_bytes: bytes) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError("TensorRT could not parse the ONNX (unsupported op or malformed model): "
                         + " | ".join(errors or logger.errors or ["no detail"]))


def _load_timing_cache(trt: ModuleType, config, path: Path | None):
    """Attach the persistent timing cache (TensorRT only); returns it, or None."""
    if path is None or trt.__name__.startswith("tensorrt_rtx") or not hasattr(config, "create_timing_cache"):
        return None
    try:
        blob = path.read_bytes() if path.exists() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=True)
        return cache
    except Exception as e:  # a bad timing cache only costs build time
        log.warning("espcn: ignoring unreadable TensorRT timing cache %s (%s)", path, e)
        return None


def _configure(trt: ModuleType, builder, spec: BuildSpec, mode: str, input_name: str):
    config = builder.create_builder_config()
    if spec.workspace_mib > 0:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_mib) << 20)
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(spec.opt_level)
    if mode == "flag":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *spec.profile)
    config.add_optimization_profile(profile)
    return config


def onnx_for_build(onnx_bytes: bytes, mode: str) -> bytes:
    """The ONNX bytes the parser gets: fp16-converted in "onnx" mode, else unchanged."""
    if mode != "onnx":
        return onnx_bytes
    from ..fp16 import convert_bytes_fp16

    return convert_bytes_fp16(onnx_bytes)


def build_serialized(trt: ModuleType, onnx_bytes: bytes, spec: BuildSpec) -> bytes:
    """Parse `onnx_bytes` and build a serialized engine for `spec`. Raises BuildError."""
    logger = make_logger(trt)
    mode = precision_mode(trt, spec.fp16)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, mode))
    _parse(trt, network, logger, onnx_for_build(onnx_bytes, mode))
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise BuildError(f"the ONNX must have one input and one output (has {network.num_inputs}/"
                         f"{network.num_outputs})")
    config = _configure(trt, builder, spec, mode, network.get_input(0).name)
    timing = _load_timing_cache(trt, config, spec.timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError("TensorRT failed to build the engine: " + (" | ".join(logger.errors) or "no detail"))
    if timing is not None and spec.timing_cache is not None:
        try:
            atomic_write(spec.timing_cache, bytes(timing.serialize()))
        except OSError as e:
            log.warning("espcn: could not save TensorRT timing cache %s (%s)", spec.timing_cache, e)
    return bytes(serialized)
