"""Precision: the `precision` argument, what this CPU can do, and which backend runs which precision.

One argument for every backend: `"auto" | "fp32" | "bf16" | "fp16" | "int8"`. Each backend kind says
which precisions it can run (`SUPPORTED`); the CPU's instruction sets say which of those are fast here
(`cpu_can`). `"auto"` is the fastest precision that keeps the quality budget (`BUDGET_DB`) on this
hardware; an explicit precision the hardware or backend cannot do is a `vs.Error`, never a silent
downgrade. The CPU flags come from /proc/cpuinfo once per process; tests replace `cpu_flags`.
"""
from __future__ import annotations

import functools
from pathlib import Path

import vapoursynth as vs

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
# Measured quality budget of the reduced precisions against fp32 (dB of Y-PSNR on Set5 and Set14
# through the plugin); tests/test_precision.py holds every shipped model to it.
BUDGET_DB = 0.03
# Backend kind -> precisions it can run. "int8" runs a quantized (QDQ) model: the shipped model's int8
# twin (`<name>_int8.onnx`, made by quantization-aware training) or a QDQ file given as `model`.
SUPPORTED = {"trt": ("fp16", "fp32"), "ov": ("bf16", "fp32", "int8"), "ort": ("fp32",)}
# Instruction-set flags (any one suffices) that make a CPU precision worth running.
CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "int8": ("avx512_vnni", "avx_vnni", "amx_int8")}
# Said with the error where the CPU lacks them: int8 without VNNI runs, but no faster than fp32, and OpenVINO's
# AVX2 kernels sum pairs of products in int16 with saturation (x2 twin on Set5: -0.059 dB, -0.026 exact).
WHY = {"int8": ": without them OpenVINO's int8 ran no faster than ONNX Runtime fp32 (AVX2 Zen 3, one 720x480 "
               "plane: 235 vs 222 ms) and its int16 sums saturate, losing quality"}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The `flags` of the first processor in /proc/cpuinfo (empty where that file is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_can(precision: str) -> bool:
    """True when this CPU runs `precision` natively (fp32 always)."""
    needs = CPU_FLAGS.get(precision)
    return needs is None or any(flag in cpu_flags() for flag in needs)


def check(precision: str) -> str:
    """Validate the argument's spelling; returns it lower-cased."""
    value = precision.lower()
    if value not in PRECISIONS:
        raise vs.Error(f"espcn.Upscale: unknown precision {precision!r}; supported precisions are "
                       + ", ".join(f'"{p}"' for p in PRECISIONS))
    return value


def unavailable(kind: str, precision: str) -> str | None:
    """Why backend `kind` cannot run explicit `precision` here, or None when it can."""
    if precision not in SUPPORTED[kind]:
        return f"backend {kind!r} runs {' and '.join(SUPPORTED[kind])} only"
    if kind != "trt" and not cpu_can(precision):
        name = "VNNI int8" if precision == "int8" else precision
        flags = ", ".join(CPU_FLAGS[precision])
        return f"this CPU has no {name} instructions (needs one of {flags}){WHY.get(precision, '')}"
    return None


def resolve(kind: str, precision: str, *, fp16: bool = True) -> str:
    """The concrete precision backend `kind` runs for the argument `precision`.

    "auto": TensorRT fp16 unless `fp16=0` (TensorRT's own argument, kept), the CPU backends bf16 where
    the CPU has it (OpenVINO) else fp32. An explicit precision it cannot run raises `vs.Error`.
    """
    if precision == "auto":
        if kind == "trt":
            return "fp16" if fp16 else "fp32"
        return "bf16" if "bf16" in SUPPORTED[kind] and cpu_can("bf16") else "fp32"
    reason = unavailable(kind, precision)
    if reason:
        raise vs.Error(f'espcn.Upscale: precision="{precision}" is unavailable: {reason}; '
                       f'use precision="auto" or one of {", ".join(SUPPORTED[kind])}')
    return precision


def is_quantized(path: Path) -> bool:
    """Does the ONNX file hold QuantizeLinear nodes (a QDQ int8 model)?"""
    import onnx

    return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path), load_external_data=False).graph.node)


def int8_model(path: Path, shipped: bool) -> Path:
    """The file precision="int8" runs for `path`: a QDQ file as it is, else a shipped model's `_int8` twin."""
    if is_quantized(path):
        return path
    if shipped:
        twin = path.with_name(f"{path.stem}_int8.onnx")
        if not twin.is_file():
            raise vs.Error(f'espcn.Upscale: precision="int8": no int8 twin of {path.name} is shipped '
                           f"({twin.name} missing); reinstall vs-espcn or use precision=\"auto\"")
        return twin
    raise vs.Error(f'espcn.Upscale: precision="int8" needs a quantized (QDQ) model, and {path.name} has no '
                   "QuantizeLinear nodes; pass the int8 ONNX the trainer exports with --qat, or use "
                   'precision="auto"')
