"""trt_available(): cheap, never raises, names the cause; TrtBackend turns it into vs.Error."""
from __future__ import annotations

import pytest
import vapoursynth as vs

from vs_espcn.backends import trt as trt_mod
from vs_espcn.backends import trt_env
from vs_espcn.backends.trt_env import GpuInfo


@pytest.fixture(autouse=True)
def fresh_probes():
    trt_env.probe_gpu.cache_clear()
    trt_env._import_first.cache_clear()
    yield
    trt_env.probe_gpu.cache_clear()
    trt_env._import_first.cache_clear()


def test_no_driver_library(monkeypatch):
    def missing():
        raise OSError("libcuda.so.1: cannot open shared object file")

    monkeypatch.setattr(trt_env, "_libcuda", missing)
    ok, why = trt_env.trt_available()
    assert not ok and why.startswith("no CUDA device")


def test_gpu_too_old(monkeypatch):
    monkeypatch.setattr(trt_env, "probe_gpu", lambda d=0: (GpuInfo(0, "Tesla K80", (3, 7)), ""))
    ok, why = trt_env.trt_available()
    assert not ok and "GPU too old" in why and "Tesla K80" in why and "3.7" in why


class FakeLibcuda:
    """The five CUDA driver calls `probe_gpu` makes, over a list of (name, (major, minor)) devices."""

    def __init__(self, devices):
        self.devices = devices

    def cuInit(self, flags):
        return 0

    def cuDeviceGetCount(self, ref):
        ref._obj.value = len(self.devices)
        return 0

    def cuDeviceGet(self, ref, index):
        ref._obj.value = index
        return 0

    def cuDeviceGetName(self, buf, size, dev):
        buf.value = self.devices[dev.value][0].encode()
        return 0

    def cuDeviceGetAttribute(self, ref, attr, dev):
        ref._obj.value = self.devices[dev.value][1][attr == trt_env._CU_ATTR_CC_MINOR]
        return 0


def test_probes_the_requested_device(monkeypatch):
    """device 0 new, device 1 too old, device 2 absent: each answer is about the device asked for."""
    lib = FakeLibcuda([("NVIDIA GeForce RTX 4090", (8, 9)), ("Quadro P4000", (6, 1))])
    monkeypatch.setattr(trt_env, "_libcuda", lambda: lib)
    monkeypatch.setattr(trt_env, "cuda_python_available", lambda: (True, ""))
    monkeypatch.setenv(trt_env.MODULE_ENV, "json")  # any importable module stands in for tensorrt
    assert trt_env.probe_gpu(1) == (GpuInfo(1, "Quadro P4000", (6, 1)), "")
    assert trt_env.trt_available() == (True, "")
    assert trt_env.trt_available(device_id=0) == (True, "")
    ok, why = trt_env.trt_available(device_id=1)
    assert not ok and why.startswith("GPU too old: device 1 (Quadro P4000)") and "6.1" in why
    ok, why = trt_env.trt_available(device_id=2)
    assert not ok and "device_id=2 out of range: 2 CUDA device(s)" in why
    with pytest.raises(TypeError):
        trt_env.trt_available(1)  # keyword only: a bare number is ambiguous at call sites


def test_backend_checks_its_own_device(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(trt_mod, "trt_available", lambda *, device_id=0: seen.append(device_id) or (False, "x"))
    model = type("M", (), {"path": tmp_path / "m.onnx", "scale": 2, "name": "m", "sha256": "0" * 64})()
    with pytest.raises(vs.Error, match="unavailable: x"):
        trt_mod.TrtBackend(model, (8, 8), type("O", (), {"device_id": 3})())
    assert seen == [3]


def test_tensorrt_missing(monkeypatch):
    monkeypatch.setattr(trt_env, "probe_gpu", lambda d=0: (GpuInfo(0, "RTX", (8, 6)), ""))
    monkeypatch.setattr(trt_env, "cuda_python_available", lambda: (True, ""))
    monkeypatch.setenv(trt_env.MODULE_ENV, "no_such_tensorrt_module")
    ok, why = trt_env.trt_available()
    assert not ok and why.startswith("tensorrt not installed") and "pip install" in why


def test_cuda_python_missing(monkeypatch):
    monkeypatch.setattr(trt_env, "probe_gpu", lambda d=0: (GpuInfo(0, "RTX", (8, 6)), ""))
    monkeypatch.setattr(trt_env.importlib.util, "find_spec", lambda name: None)
    ok, why = trt_env.trt_available()
    assert not ok and why.startswith("cuda-python not installed")


def test_real_cuda_api_reports_errors_by_name():
    """Without a usable GPU the real cuda-python wrapper raises CudaError naming the call."""
    from vs_espcn.backends.trt_run import CudaApi, CudaError

    if trt_env.probe_gpu(0)[0] is not None:
        pytest.skip("a CUDA device is present: calls succeed")
    try:
        api = CudaApi()
    except ImportError as e:
        pytest.skip(f"cuda-python not installed: {e}")
    with pytest.raises(CudaError, match=r"^cudaMalloc failed: .+ \(\d+\)$"):
        api.malloc(1024)


def test_available_when_gpu_and_module(monkeypatch):
    monkeypatch.setattr(trt_env, "probe_gpu", lambda d=0: (GpuInfo(0, "RTX", (8, 6)), ""))
    monkeypatch.setattr(trt_env, "cuda_python_available", lambda: (True, ""))
    monkeypatch.setenv(trt_env.MODULE_ENV, "json")  # any importable module stands in for tensorrt
    assert trt_env.trt_available() == (True, "")


def test_probe_of_this_machine_never_raises():
    ok, why = trt_mod.trt_available()
    assert isinstance(ok, bool) and (ok or why)


def test_backend_unavailable_is_vs_error(monkeypatch, tmp_path):
    monkeypatch.setattr(trt_mod, "trt_available", lambda device_id=0: (False, "no CUDA device (test)"))
    model = type("M", (), {"path": tmp_path / "m.onnx", "scale": 2, "name": "m", "sha256": "0" * 64})()
    with pytest.raises(vs.Error, match=r'^espcn\.Upscale: backend="trt" is unavailable: no CUDA device '
                                       r'\(test\); use backend="ort"'):
        trt_mod.TrtBackend(model, (8, 8), None)


def test_import_of_backend_module_is_light():
    import subprocess
    import sys

    code = ("import sys, vs_espcn.backends.trt, vs_espcn.engine_cache, vs_espcn.engines_cli;"
            "bad = [m for m in ('tensorrt', 'tensorrt_rtx', 'onnx', 'cuda', 'filelock') if m in sys.modules];"
            "print(bad)")
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert out.strip() == "[]"
