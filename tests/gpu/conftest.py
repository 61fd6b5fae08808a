"""GPU-only tests: everything under tests/gpu/ is skipped, with the reason, unless `nvidia-smi`
works and the TensorRT backend reports itself usable (GPU + tensorrt or tensorrt_rtx)."""
from __future__ import annotations

import functools
import subprocess

import pytest


@functools.lru_cache(maxsize=None)
def gpu_skip_reason() -> str:
    """"" when the GPU tests can run, else why not."""
    try:
        res = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"nvidia-smi does not work here ({e}): no NVIDIA GPU"
    if res.returncode != 0 or "GPU" not in res.stdout:
        return f"nvidia-smi found no GPU (rc={res.returncode}): {res.stderr.strip()[:200]}"
    from vs_espcn.backends.trt import trt_available

    ok, why = trt_available()
    return "" if ok else f"TensorRT backend unavailable: {why}"


def pytest_collection_modifyitems(config, items):
    reason = gpu_skip_reason()
    if not reason:
        return
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.skip(reason=reason))
