"""Build the native shim into VapourSynth's autoload folder.

Everything declarative lives in pyproject.toml; this file only adds the C extension. The shim is a
VapourSynth plugin, not a Python extension module, so it is named `libvsespcn.so` (no ABI suffix),
placed at `vapoursynth/plugins/vs_espcn/` with a `manifest.vs` that lists it (the layout the
vs-mlrt wheels use), and it does not link libpython (it finds Python at run time with dlsym).

Because the shim depends on no Python ABI, the wheel is tagged `py3-none-<platform>`: one wheel serves
every CPython >= 3.12. `make wheel` then retags the platform as manylinux_2_28 with auditwheel; for that
the shim binds `dlsym` to its oldest symbol version (GLIBC_2.2.5) instead of the GLIBC_2.34 one that a
new glibc links by default, and lists libdl.so.2 so that glibc < 2.34 (where dlsym lives there) finds it.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext

PLUGIN_DIR = ("vapoursynth", "plugins", "vs_espcn")
LIBRARY = "libvsespcn"
MANIFEST = f"[VapourSynth Manifest V1]\n{LIBRARY}\n"
# Force-included into the shim's compile: bind dlsym to the symbol version every x86-64 glibc has.
OLD_DLSYM = '__asm__(".symver dlsym, dlsym@GLIBC_2.2.5");\n'


def vapoursynth_include() -> str:
    """Where VapourSynth4.h is: $VS_INCLUDE_DIR, else the installed vapoursynth wheel's include/."""
    override = os.environ.get("VS_INCLUDE_DIR")
    if override:
        return override
    spec = importlib.util.find_spec("vapoursynth")
    if spec is None or spec.origin is None:
        raise RuntimeError("vs-espcn: building the shim needs the vapoursynth wheel (its include/ folder) "
                           "or VS_INCLUDE_DIR pointing at VapourSynth4.h")
    include = Path(spec.origin).parent / "include"
    if not (include / "VapourSynth4.h").is_file():
        raise RuntimeError(f"vs-espcn: VapourSynth4.h not found in {include}; set VS_INCLUDE_DIR")
    return str(include)


class BuildPlugin(build_ext):
    """build_ext that names the library like a plugin, skips libpython, and writes manifest.vs."""

    def get_ext_filename(self, fullname: str) -> str:
        """`vapoursynth/plugins/vs_espcn/libvsespcn.so` instead of `...cpython-3xx-<arch>.so`."""
        return os.path.join(*fullname.split(".")) + ".so"

    def get_libraries(self, ext: Extension) -> list[str]:
        """Never link libpython: the shim looks Python up in the host process."""
        return list(ext.libraries)

    def get_export_symbols(self, ext: Extension) -> list[str]:
        """The plugin exports VapourSynthPluginInit2, not PyInit_*."""
        return ["VapourSynthPluginInit2"]

    def build_extension(self, ext: Extension) -> None:
        """Compile with the old-dlsym header force-included (see the module docstring)."""
        header = Path(self.build_temp, "espcn_old_dlsym.h")
        header.parent.mkdir(parents=True, exist_ok=True)
        header.write_text(OLD_DLSYM, encoding="ascii")
        ext.extra_compile_args = [*ext.extra_compile_args, "-include", str(header)]
        super().build_extension(ext)

    def run(self) -> None:
        """Build, then put manifest.vs beside the library (in build_lib and, for --inplace, here)."""
        super().run()
        roots = {self.build_lib} | ({"."} if self.inplace else set())
        for root in roots:
            folder = Path(root, *PLUGIN_DIR)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "manifest.vs").write_text(MANIFEST, encoding="ascii")

    def get_outputs(self) -> list[str]:
        """Tell install/wheel about manifest.vs too."""
        return super().get_outputs() + [os.path.join(self.build_lib, *PLUGIN_DIR, "manifest.vs")]


class PurePythonAbiWheel(bdist_wheel):
    """Tag the wheel `py3-none-<platform>`: the shim uses no Python ABI, so any CPython >= 3.12 fits."""

    def get_tag(self) -> tuple[str, str, str]:
        """(python, abi, platform) with the platform bdist_wheel found (e.g. linux_x86_64)."""
        _, _, platform = super().get_tag()
        return "py3", "none", platform


shim = Extension(
    ".".join((*PLUGIN_DIR, LIBRARY)),
    sources=["vs_espcn/_shim/espcn_shim.c"],
    include_dirs=[vapoursynth_include()],
    extra_compile_args=["-std=c11", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra"],
    extra_link_args=["-Wl,--no-as-needed", "-l:libdl.so.2", "-Wl,--as-needed"],
)

setup(ext_modules=[shim], cmdclass={"build_ext": BuildPlugin, "bdist_wheel": PurePythonAbiWheel})
