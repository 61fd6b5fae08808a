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


@pytest.fixture
def image_dir(tmp_path):
    """Six small synthetic RGB images with edges and gradients (trainer tests)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    yy, xx = np.mgrid[0:72, 0:80]
    for i in range(6):
        base = 128 + 100 * np.sin(xx / (3 + i) + yy / (5 + i))
        base[(xx // (8 + i) + yy // 9) % 2 == 0] *= 0.5
        rgb = np.stack([base, base * 0.8, 255 - base], -1) + rng.normal(0, 3, (72, 80, 1))
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(d / f"im{i}.png")
    return d
