"""Shared helpers of the TensorRT tests: which shipped models exist, whether a builder starts."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest

MODEL_DIR = Path(__file__).resolve().parents[1] / "vs_espcn" / "models"
SHIPPED = ("espcn_x2.onnx", "espcn_x3.onnx", "espcn_x4.onnx", "espcn_x2_anime.onnx")


def shipped_models() -> list[Path]:
    """The shipped ONNX files present in this checkout (they arrive after training)."""
    return [MODEL_DIR / n for n in SHIPPED if (MODEL_DIR / n).is_file()]


@functools.lru_cache(maxsize=None)
def builder_status() -> tuple[object | None, str]:
    """(TensorRT module, "") when a TensorRT builder can be created here, else (None, reason)."""
    from vs_espcn.backends.trt_env import import_trt

    trt, why = import_trt()
    if trt is None:
        return None, why
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        if builder is None:
            return None, f"{trt.__name__}.Builder() returned None"
    except Exception as e:  # noqa: BLE001
        return None, f"{trt.__name__} builder cannot start: {e}"
    return trt, ""


def require_builder():
    """The TensorRT module, or skip the test with the reason."""
    trt, why = builder_status()
    if trt is None:
        pytest.skip(f"TensorRT builder unavailable: {why}")
    return trt


@functools.lru_cache(maxsize=None)
def gpu_skip_reason() -> str:
    """"" when the GPU tests (tests/gpu/) can run: `nvidia-smi` lists a GPU and the TensorRT
    backend reports itself usable; else why not."""
    import subprocess

    try:
        res = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"nvidia-smi does not work here ({e}): no NVIDIA GPU"
    if res.returncode != 0 or "GPU" not in res.stdout:
        return f"nvidia-smi found no GPU (rc={res.returncode}): {res.stderr.strip()[:200]}"
    from vs_espcn.backends.trt import trt_available

    ok, why = trt_available()
    return "" if ok else f"TensorRT backend unavailable: {why}"
