"""The GPU benchmark command runs anywhere: TensorRT rows show fps or the reason they cannot run."""
from __future__ import annotations

from tests.onnx_models import make_espcn_onnx
from vs_espcn import bench_gpu
from vs_espcn.backends.trt import trt_available


def test_bench_gpu_prints_one_row_per_backend(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VS_ESPCN_CACHE_DIR", str(tmp_path / "cache"))
    model = make_espcn_onnx(tmp_path / "m.onnx", 2)
    assert bench_gpu.main(["--model", str(model), "--width", "64", "--height", "48", "--frames", "2",
                           "--warmup", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Upscale x2 64x48 -> 128x96"
    rows = {ln[:20].strip(): ln[20:].strip() for ln in lines[1:]}
    assert list(rows) == [c[0] for c in bench_gpu.CONFIGS]
    assert rows["ort (CPU)"].endswith("fps") and float(rows["ort (CPU)"].split()[0]) > 0
    ok, why = trt_available()
    for label in ("trt fp16", "trt fp16 2 streams", "trt fp32"):
        if ok:
            assert rows[label].endswith("fps")
        else:
            assert rows[label].startswith("n/a (espcn.Upscale:") and why in rows[label]
