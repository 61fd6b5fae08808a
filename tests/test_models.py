"""Model registry: metadata, receptive radius from the graph, hashing, caching, errors."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import pytest
import vapoursynth as vs
from onnx import TensorProto, helper, numpy_helper

from onnx_models import make_espcn_onnx
from test_support import nearest2, onnx_dir, random3  # noqa: F401
from vs_espcn import models


def test_modelinfo_from_path(random3):
    info = models.resolve(str(random3), None)
    assert info.scale == 3 and info.radius == 4 and info.name == "random-x3"
    assert info.sha256 == hashlib.sha256(random3.read_bytes()).hexdigest()
    assert info.metadata["y_convention"] == "bt601-studio/255"
    assert models.resolve(str(random3), 3) is info  # cached per (path, mtime)
    with pytest.raises(Exception):
        info.scale = 2  # frozen


def test_cache_follows_file_changes(tmp_path):
    p = make_espcn_onnx(tmp_path / "m.onnx", 2, "random", seed=1)
    a = models.load(p)
    make_espcn_onnx(p, 4, "random", seed=2)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    b = models.load(p)
    assert (a.scale, b.scale) == (2, 4) and a.sha256 != b.sha256


def _conv_model(path, kernels, dilations=None, with_kernel_shape=True):
    """A chain of single-channel Convs with the given kernel sizes and a scale=2 metadata."""
    nodes, inits, prev = [], [], "lr"
    for i, k in enumerate(kernels):
        inits.append(numpy_helper.from_array(np.zeros((1, 1, k, k), np.float32), f"w{i}"))
        attrs = {"kernel_shape": [k, k]} if with_kernel_shape else {}
        if dilations:
            attrs["dilations"] = [dilations[i]] * 2
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], auto_pad="SAME_UPPER", **attrs))
        prev = f"c{i}"
    nodes.append(helper.make_node("DepthToSpace", [prev], ["hr"], blocksize=1, mode="CRD"))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("lr", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("hr", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.metadata_props.add(key="scale", value="2")
    onnx.save(m, path)
    return path


@pytest.mark.parametrize("kernels,dil,want", [([5, 3, 3], None, 4), ([9, 5, 5], None, 8), ([3], [2], 2),
                                             ([1, 1], None, 0)])
def test_radius_from_conv_nodes(tmp_path, kernels, dil, want):
    assert models.load(_conv_model(tmp_path / "c.onnx", kernels, dil)).radius == want


def test_radius_without_kernel_shape_attribute(tmp_path):
    assert models.load(_conv_model(tmp_path / "c.onnx", [7, 3], with_kernel_shape=False)).radius == 4


def test_named_models(monkeypatch, tmp_path, nearest2):
    monkeypatch.setattr(models, "MODEL_DIR", tmp_path)
    with pytest.raises(vs.Error, match="espcn_x2.onnx is missing"):
        models.resolve("", None)
    with pytest.raises(vs.Error, match="espcn_x2_anime.onnx is missing"):
        models.resolve("anime", 2)
    for name in ("espcn_x2.onnx", "espcn_x4.onnx", "espcn_x2_anime.onnx"):
        make_espcn_onnx(tmp_path / name, 4 if "x4" in name else 2, "random")
    assert models.resolve("", None).path.name == "espcn_x2.onnx"
    assert models.resolve("natural", 4).path.name == "espcn_x4.onnx"
    assert models.resolve("anime", None).path.name == "espcn_x2_anime.onnx"
    with pytest.raises(vs.Error, match="scale=2 only"):
        models.resolve("anime", 3)


def test_model_errors(tmp_path, nearest2):
    no_scale = make_espcn_onnx(tmp_path / "ns.onnx", 2, "random", metadata={"scale": "two"})
    with pytest.raises(vs.Error, match="no valid 'scale' metadata"):
        models.resolve(str(no_scale), None)
    bad_scale = make_espcn_onnx(tmp_path / "s5.onnx", 2, "random", metadata={"scale": "5"})
    with pytest.raises(vs.Error, match="supported scales are 2, 3, 4"):
        models.resolve(str(bad_scale), None)
    with pytest.raises(vs.Error, match="does not match"):
        models.resolve(str(nearest2), 4)
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(nearest2.read_bytes()[:200])
    with pytest.raises(vs.Error, match="espcn.Upscale: .*(not a valid ONNX|scale)"):
        models.resolve(str(trunc), None)
    with pytest.raises(vs.Error, match="not found"):
        models.resolve(str(tmp_path / "missing.onnx"), None)


# ----------------------------------------------------------------------------- the shared factory
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_factory_nearest_model_is_exact_nearest_neighbour(tmp_path, scale):
    """vs_espcn.onnx_factory (shared by bench and tests): nearest+relu == np.repeat, any size."""
    import onnxruntime as ort

    from vs_espcn import onnx_factory

    path = onnx_factory.make_espcn_onnx(tmp_path / "n.onnx", scale, "nearest", activation="relu")
    x = np.random.default_rng(scale).random((1, 1, 7, 5), dtype=np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
    assert np.array_equal(got[0, 0], x[0, 0].repeat(scale, 0).repeat(scale, 1))
    info = models.load(path)
    assert (info.scale, info.radius, info.metadata["y_convention"]) == (scale, 4, "bt601-studio/255")


def test_bench_builds_its_stand_in_with_the_shared_factory(monkeypatch, tmp_path):
    """Without shipped weights the benchmark model is the factory's seeded random x2 network."""
    from vs_espcn import bench, onnx_factory

    monkeypatch.setattr(models, "MODEL_DIR", tmp_path / "none")
    path = bench.default_model(tmp_path)
    want = onnx_factory.espcn_model(2, "random", seed=0)
    assert onnx.load(path).graph == want.graph
    assert not hasattr(bench, "build_random_espcn")
