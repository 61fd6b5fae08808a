"""Model registry: metadata, receptive radius from the graph, hashing, caching, errors."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import pytest
import vapoursynth as vs
from onnx import TensorProto, helper, numpy_helper

from onnx_models import espcn_model as factory_model
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
    """A chain of Convs with the given kernel sizes (the last one to 4 channels), DepthToSpace(2)
    and a scale=2 metadata."""
    nodes, inits, prev = [], [], "lr"
    for i, k in enumerate(kernels):
        out_ch = 4 if i == len(kernels) - 1 else 1
        inits.append(numpy_helper.from_array(np.zeros((out_ch, 1, k, k), np.float32), f"w{i}"))
        attrs = {"kernel_shape": [k, k]} if with_kernel_shape else {}
        if dilations:
            attrs["dilations"] = [dilations[i]] * 2
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], auto_pad="SAME_UPPER", **attrs))
        prev = f"c{i}"
    nodes.append(helper.make_node("DepthToSpace", [prev], ["hr"], blocksize=2, mode="CRD"))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 1, "H", "W"])],
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
    for name in ("espcn_x2.onnx", "espcn_x4.onnx", "espcn_x2_anime.onnx", "espcn_x2_manga.onnx"):
        make_espcn_onnx(tmp_path / name, 4 if "x4" in name else 2, "random")
    assert models.resolve("", None).path.name == "espcn_x2.onnx"
    assert models.resolve("natural", 4).path.name == "espcn_x4.onnx"
    assert models.resolve("anime", None).path.name == "espcn_x2_anime.onnx"
    assert models.resolve("manga", 2).path.name == "espcn_x2_manga.onnx"
    for name in ("anime", "manga"):
        with pytest.raises(vs.Error, match=f'model="{name}" supports scale=2 only'):
            models.resolve(name, 3)
    with pytest.raises(vs.Error, match='"anime" / "manga" or a path'):
        models.resolve("mango", 2)


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


# ----------------------------------------------------------------------------- contract checks at load
def _save(model, path):
    onnx.save(model, path)
    return str(path)


def _resize_model(factor: int, label: int):
    """No DepthToSpace: Conv 3x3 then nearest Resize by `factor`, labelled scale `label`."""
    inits = [numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32) / 9, "w"),
             numpy_helper.from_array(np.array([1, 1, factor, factor], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["lr", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["c", "", "scales"], ["hr"], mode="nearest")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 1, "H", "W"])],
                          [helper.make_tensor_value_info("hr", TensorProto.FLOAT, ["N", 1, "A", "B"])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    m.metadata_props.add(key="scale", value=str(label))
    return m


def _fixed_input(m):
    for d, v in zip(m.graph.input[0].type.tensor_type.shape.dim, (1, 1, 8, 8)):
        d.dim_value = v
    return m


def _extra_input(m):
    m.graph.input.append(helper.make_tensor_value_info("gain", TensorProto.FLOAT, [1]))
    return m


def _rank3(m):
    del m.graph.input[0].type.tensor_type.shape.dim[0]
    return m


def _three_channels(m):
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 3
    return m


def _two_outputs(m):
    m.graph.output.append(helper.make_tensor_value_info("c1", TensorProto.FLOAT, None))
    return m


@pytest.mark.parametrize("build,match", [
    (lambda: factory_model(3, metadata={"scale": "2"}), "labelled scale 2 but its DepthToSpace blocksize is 3"),
    (lambda: factory_model(2, metadata={"scale": "4"}), "labelled scale 4 but its DepthToSpace blocksize is 2"),
    (lambda: _fixed_input(factory_model(2)), "fixed input size 8x8"),
    (lambda: _extra_input(factory_model(2)), "2 data inputs \\(lr, gain\\)"),
    (lambda: _rank3(factory_model(2)), "rank 3"),
    (lambda: _three_channels(factory_model(2)), "3 channels"),
    (lambda: _two_outputs(factory_model(2)), "2 outputs"),
    (lambda: _resize_model(3, 2), "labelled scale 2 but maps a \\[1,1,8,8\\] input to \\[1, 1, 24, 24\\]"),
], ids=["x3-as-x2", "x2-as-x4", "fixed-8x8", "two-inputs", "rank3", "3ch", "two-outputs", "resize-x3-as-x2"])
def test_model_not_matching_its_metadata_fails_at_load(tmp_path, build, match):
    """A mismatched model is a clear vs.Error when the graph is built, never a get_frame traceback."""
    path = _save(build(), tmp_path / "bad.onnx")
    with pytest.raises(vs.Error, match="espcn.Upscale: model .*" + match) as info:
        models.resolve(path, None)
    assert "[N,1,H,W]" in str(info.value) or "metadata must match" in str(info.value)


def test_initializers_listed_as_inputs_are_not_data_inputs(tmp_path):
    """Old-style graphs list every initializer as an input too: still one data input."""
    m = factory_model(2)
    for t in m.graph.initializer:
        m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    info = models.resolve(_save(m, tmp_path / "old.onnx"), None)
    assert (info.scale, info.radius) == (2, 4)


def test_model_without_depth_to_space_is_checked_by_shape(tmp_path):
    """A Resize-based network is accepted when its output really is input x scale."""
    info = models.resolve(_save(_resize_model(3, 3), tmp_path / "ok.onnx"), None)
    assert (info.scale, info.radius) == (3, 1)


# ----------------------------------------------------------------------------- the demo's model check
def test_demo_resolves_models_like_upscale(monkeypatch, tmp_path, nearest2):
    """demo.check_model goes through models.resolve (no second copy of the shipped-path rules)."""
    from vs_espcn import demo

    assert not hasattr(demo, "shipped_model")
    monkeypatch.setattr(models, "MODEL_DIR", tmp_path)
    with pytest.raises(demo.DemoError, match="shipped model espcn_x3.onnx is missing.*--model PATH"):
        demo.check_model("", 3)
    with pytest.raises(demo.DemoError, match="does not match the model's scale 2.*--model PATH"):
        demo.check_model(str(nearest2), 4)  # caught before any graph is built
    make_espcn_onnx(tmp_path / "espcn_x3.onnx", 3)
    assert demo.check_model("", 3) == "" and demo.check_model(str(nearest2), 2) == str(nearest2)
