"""Packaging: the installed distribution, the wheel layout, a light `import vs_espcn`, the CLI's messages.

tests/test_wheel.py installs the wheel into a fresh venv; this file checks the developer's install."""
from __future__ import annotations

import filecmp
import importlib.metadata as md
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import vapoursynth as vs

REPO = Path(__file__).resolve().parents[1]

PLUGIN_FILES = ("vapoursynth/plugins/vs_espcn/libvsespcn.so", "vapoursynth/plugins/vs_espcn/manifest.vs")
MANIFEST = "[VapourSynth Manifest V1]\nlibvsespcn\n"
STALE = "the installed vs-espcn differs from the source tree: run `make test` (it reinstalls with pip install .)"


def _user_env() -> dict[str, str]:
    """A user's environment: nothing pointing at the source tree."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VAPOURSYNTH_EXTRA_PLUGIN_PATH")}


@pytest.fixture(scope="module")
def dist() -> md.Distribution:
    """The installed distribution (site-packages, not the source tree's build metadata)."""
    site = str(Path(vs.__file__).resolve().parents[1])
    found = list(md.Distribution.discover(name="vs-espcn", path=[site]))
    if not found:
        pytest.fail(f"vs-espcn is not installed in {site}: run `make test` (pip install .)")
    return found[0]


def test_installed_shim_and_manifest_in_plugin_dir(dist):
    recorded = {str(f) for f in dist.files}
    assert set(PLUGIN_FILES) <= recorded
    folder = Path(vs.get_plugin_dir()) / "vs_espcn"
    assert sorted(p.name for p in folder.iterdir()) == ["libvsespcn.so", "manifest.vs"]
    assert (folder / "manifest.vs").read_text() == MANIFEST
    assert (folder / "libvsespcn.so").read_bytes()[:4] == b"\x7fELF"


def test_installed_package_matches_source(dist):
    installed = Path(str(dist.locate_file("vs_espcn")))
    sources = [p for p in (REPO / "vs_espcn").rglob("*") if p.suffix in (".py", ".onnx", ".md")
               and "__pycache__" not in p.parts]
    assert sources
    for src in sources:
        copy = installed / src.relative_to(REPO / "vs_espcn")
        assert copy.is_file() and filecmp.cmp(src, copy, shallow=False), f"{src.name}: {STALE}"


def test_metadata_declares_python_deps_and_extras(dist):
    assert dist.version == _source_version()
    assert dist.metadata["Requires-Python"] == ">=3.12"
    requires = dist.requires or []
    base = {r.split(">")[0].split("=")[0].split(";")[0].strip().lower() for r in requires if "extra ==" not in r}
    assert base == {"vapoursynth", "numpy", "onnx", "onnxruntime", "openvino", "platformdirs", "filelock"}
    assert set(dist.metadata.get_all("Provides-Extra")) == {"demo", "train", "trt", "trt-rtx", "dev"}
    dev = _extra(requires, "dev")
    assert {"pytest", "vapoursynth-mlrt-ort", "vapoursynth-mlrt-ov", "scikit-image", "torch", "tensorrt-rtx", "vsjetpack"} <= dev
    # the demo's set is small (no torch, no TensorRT) and the dev set contains it
    assert _extra(requires, "demo") == {"pillow", "scikit-image"} and _extra(requires, "demo") <= dev


def _extra(requires: list[str], name: str) -> set[str]:
    """The project names an extra adds (version specifiers and markers dropped)."""
    return {r.split(">")[0].split("=")[0].split(";")[0].strip().lower() for r in requires
            if f'extra == "{name}"' in r}


def _source_version() -> str:
    namespace: dict = {}
    for line in (REPO / "vs_espcn" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            exec(line, namespace)  # noqa: S102 - one literal assignment from our own file
    return namespace["__version__"]


def test_wheel_layout(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("vs_espcn-*.whl")
    assert wheel.name.endswith("-py3-none-linux_x86_64.whl")  # any CPython; `make wheel` retags manylinux
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(PLUGIN_FILES) <= names
    assert zipfile.ZipFile(wheel).read(PLUGIN_FILES[1]).decode() == MANIFEST
    assert "vapoursynth/__init__.py" not in names  # we add files to VapourSynth's folder, never replace it
    assert {"vs_espcn/__init__.py", "vs_espcn/_entry.py", "vs_espcn/demo.py"} <= names
    assert not [n for n in names if n.startswith("trainer/")]  # the trainer runs from the repository only
    for data in [*(REPO / "vs_espcn" / "models").glob("*.onnx"), *(REPO / "vs_espcn" / "models").glob("*.md")]:
        assert f"vs_espcn/models/{data.name}" in names
    assert not [n for n in names if n.endswith((".pt", ".engine"))]


def test_shim_does_not_link_libpython(dist):
    so = Path(str(dist.locate_file(PLUGIN_FILES[0])))
    needed = subprocess.run(["ldd", str(so)], capture_output=True, text=True).stdout
    assert "libpython" not in needed and "libvapoursynth" not in needed


def test_import_is_light_and_versioned(tmp_path):
    script = ("import sys, vs_espcn; heavy = {'vapoursynth', 'onnxruntime', 'onnx', 'openvino', 'tensorrt', 'tensorrt_rtx', "
              "'torch', 'numpy'}; print(sorted(m for m in sys.modules if m.split('.')[0] in heavy)); "
              "print(vs_espcn.__version__); print(callable(vs_espcn.upscale))")
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_user_env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:3] == ["[]", _source_version(), "True"]


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vs_espcn", "demo", "--out", str(tmp_path / "out"), *args],
                          cwd=tmp_path, env=_user_env(), capture_output=True, text=True, timeout=600)


def test_demo_writes_upscale_and_comparison(tmp_path, onnx_nearest_x2):
    from PIL import Image

    res = _demo(tmp_path, "--model", str(onnx_nearest_x2))
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""  # reports go to stderr
    assert Image.open(tmp_path / "out" / "demo_x2.png").size == (512, 512)
    assert Image.open(tmp_path / "out" / "demo_compare.png").size == (3 * 320 + 2 * 6, 320 + 22)
    line = next(li for li in res.stderr.splitlines() if "Y-PSNR" in li)
    espcn, bicubic = (float(line.split(name)[1].split("dB")[0]) for name in ("ESPCN ", "bicubic "))
    # a nearest-neighbour 'network' must lose to Catmull-Rom on a real photo, and both are sane
    assert 20 < espcn < bicubic < 45


def test_demo_without_weights_says_what_to_do(tmp_path):
    res = _demo(tmp_path, "--model", str(tmp_path / "missing.onnx"))
    assert res.returncode == 1 and res.stdout == ""
    assert "missing.onnx' not found" in res.stderr and "--model PATH" in res.stderr


def test_ci_runs_exactly_make_test():
    script = REPO / ".ci" / "run"
    assert os.access(script, os.X_OK)
    commands = [li.strip() for li in script.read_text().splitlines() if li.strip() and not li.startswith("#")]
    assert commands[-1] == "make test"


def _cli(*args: str, pre: str = "", module: str = "vs_espcn") -> subprocess.CompletedProcess:
    """`python -m <module> args` from the source tree, after `pre` (e.g. hiding a package)."""
    code = (f"import runpy, sys\n{pre}\nsys.argv = ['-m', *{list(args)!r}]\n"
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=_user_env() | {"PYTHONPATH": str(REPO)})


def test_unknown_command_is_named_before_the_usage():
    res = _cli("foo")
    assert res.returncode == 2 and res.stdout == ""
    first, second = res.stderr.splitlines()[:2]
    assert "unknown command 'foo'" in first and second.startswith("usage: python -m vs_espcn")
    assert _cli("--help").returncode == 0 and "unknown" not in _cli("--help").stderr


def test_bench_gpu_help_names_the_command_and_says_a_whole_sentence():
    res = _cli("bench-gpu", "--help")
    assert res.returncode == 0
    assert res.stdout.startswith("usage: python -m vs_espcn bench-gpu")
    description = " ".join(res.stdout.split("\n\n")[1].split())
    assert description.endswith(".") and "TensorRT" in description


@pytest.mark.parametrize("hidden,named", [(["PIL"], "pillow"), (["skimage"], "scikit-image"),
                                          (["PIL", "skimage"], "pillow scikit-image")])
def test_demo_without_its_packages_says_what_to_pip_install(hidden, named):
    res = _cli("demo", pre="; ".join(f"sys.modules[{h!r}] = None" for h in hidden))
    assert res.returncode == 1 and res.stdout == ""
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert f"pip install {named}" in res.stderr and ".[dev]" not in res.stderr


def test_a_command_missing_an_optional_package_is_one_sentence():
    # bench-gpu imports nothing optional itself; hide numpy so its clip cannot be made
    res = _cli("bench-gpu", "--only", "ort", "--frames", "1", pre="sys.modules['numpy'] = None")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].endswith("pip install numpy")


@pytest.mark.parametrize("command", ["train", "eval", "export", "release", "card"])
def test_trainer_without_torch_is_one_sentence(command):
    res = _cli("--help", pre="sys.modules['torch'] = None", module=f"trainer.{command}")
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip() == (f"python -m trainer.{command} needs torch, which is not installed; "
                                  "install with: pip install torch")
