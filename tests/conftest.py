"""Shared fixtures: the repo root, the autoloaded `espcn` core, small test ONNX models.

The plugin under test is the installed one (`make test` runs `pip install .` first): VapourSynth
autoloads the shim from `<site-packages>/vapoursynth/plugins/vs_espcn/`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/onnx_models.py, helpers

from onnx_models import make_espcn_onnx  # noqa: E402


@pytest.fixture(scope="session")
def core():
    """vs.core with the autoloaded `espcn` namespace (fails clearly when the shim is not installed)."""
    import vapoursynth as vs

    if not hasattr(vs.core, "espcn"):
        pytest.fail("the espcn namespace is not autoloaded: install the package (non-editable) with "
                    "`make test` or `pip install .`; plugin dir: " + vs.get_plugin_dir())
    return vs.core


@pytest.fixture(scope="session")
def onnx_x2(tmp_path_factory) -> Path:
    """A seeded random-weights ESPCN x2 (tanh)."""
    return make_espcn_onnx(tmp_path_factory.mktemp("onnx") / "random_x2.onnx", 2, "random", seed=1)


@pytest.fixture(scope="session")
def onnx_nearest_x2(tmp_path_factory) -> Path:
    """An ESPCN x2 whose weights make it an exact nearest-neighbour upscaler (== resize.Point)."""
    return make_espcn_onnx(tmp_path_factory.mktemp("onnx") / "nearest_x2.onnx", 2, "nearest",
                           activation="relu")
