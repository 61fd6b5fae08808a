"""The scripts in examples/ run as a user would run them (needs ../shared/data and the installed plugin)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

vs = pytest.importorskip("vapoursynth")
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
VIDEO = SHARED / "video" / "park_joy_90p_8_420.y4m"  # 160x90, 10 frames
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.skipif(not hasattr(vs.core, "espcn"), reason="espcn plugin not installed (make test installs it)"),
    pytest.mark.skipif(not (REPO / "vs_espcn/models/espcn_x2.onnx").exists(), reason="shipped x2 model missing"),
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return env


def _ffmpeg() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="ffmpeg comes from imageio-ffmpeg (dev extra)")
    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"test images not found at {SHARED}")
def test_upscale_image_script(tmp_path):
    hr = Image.open(SHARED / "eval" / "Set5" / "bird.png").convert("RGB")
    lr = hr.resize((hr.width // 2, hr.height // 2), Image.Resampling.BICUBIC)
    lr.save(tmp_path / "bird_lr.png")
    out = tmp_path / "bird_x2.png"
    subprocess.run([sys.executable, str(REPO / "examples/upscale_image.py"), str(tmp_path / "bird_lr.png"),
                    str(out)], check=True, env=_env(), timeout=300)
    up = Image.open(out)
    assert up.size == hr.size

    def psnr(img: Image.Image) -> float:
        err = np.asarray(img, np.float64)[4:-4, 4:-4] - np.asarray(hr, np.float64)[4:-4, 4:-4]
        return 10 * np.log10(255**2 / np.mean(err**2))

    # ESPCN must beat bicubic on the ground truth it never saw (RGB PSNR; the net only sharpens luma)
    assert psnr(up) > psnr(lr.resize(hr.size, Image.Resampling.BICUBIC)) + 0.3


@pytest.mark.skipif(not VIDEO.exists(), reason=f"test clip not found at {VIDEO}")
@pytest.mark.parametrize("given", [True, False], ids=["FFMPEG-set", "ffmpeg-found-by-the-script"])
def test_vspipe_to_ffmpeg(tmp_path, given):
    out = tmp_path / "out.mkv"
    env = _env() | {"FFMPEG": _ffmpeg()} if given else {k: v for k, v in _env().items() if k != "FFMPEG"}
    subprocess.run([str(REPO / "examples/vspipe_ffmpeg.sh"), str(VIDEO), str(out)], check=True, env=env,
                   timeout=600)
    raw = subprocess.run([_ffmpeg(), "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                         check=True, capture_output=True, timeout=300).stdout
    assert len(raw) == 10 * 320 * 180 * 3 // 2  # 10 frames of 320x180 4:2:0


@pytest.mark.skipif(not VIDEO.exists(), reason=f"test clip not found at {VIDEO}")
@pytest.mark.parametrize("script,header", [("upscale.vpy", b"W320 H180"), ("anime.vpy", b"C420p10")])
def test_vpy_scripts_in_vspipe(script, header):
    if script == "anime.vpy" and not (REPO / "vs_espcn/models/espcn_x2_anime.onnx").exists():
        pytest.skip("shipped anime model missing")
    run = subprocess.run([str(BIN / "vspipe"), "-c", "y4m", "-a", f"src={VIDEO}", str(REPO / "examples" / script),
                          "-"], capture_output=True, env=_env(), timeout=600)
    assert run.returncode == 0, run.stderr.decode()
    first = run.stdout.split(b"\n", 1)[0]
    assert first.startswith(b"YUV4MPEG2") and b"W320 H180" in first and header in first
    assert run.stdout.count(b"FRAME") == 10
