"""Small ESPCN-shaped ONNX models without torch: the benchmark's stand-in and the tests' models.

`make_espcn_onnx` writes a network that keeps the ONNX contract of docs/DESIGN.md: input `lr`
[N,1,H,W] -> conv 5x5/c1 -> act -> conv 3x3/c2 -> act -> conv 3x3/r^2 -> DepthToSpace(CRD) ->
`hr`, with `scale`, `arch`, `y_convention` and `name` metadata. `weights="random"` is a seeded
random network (He-like scale, small biases); `weights="nearest"` with `activation="relu"` is an
exact nearest-neighbour upscaler for inputs >= 0 (the known-answer model). numpy and onnx are
imported lazily so `import vs_espcn` stays light.
"""
from __future__ import annotations

import json
from pathlib import Path

ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}


def espcn_weights(scale: int, kind: str, seed: int, channels: tuple[int, int]) -> list:
    """[w1, b1, w2, b2, w3, b3] float32 arrays for the three convolutions."""
    import numpy as np

    c1, c2 = channels
    shapes = [(c1, 1, 5, 5), (c2, c1, 3, 3), (scale * scale, c2, 3, 3)]
    if kind == "random":
        rng = np.random.default_rng(seed)
        out = []
        for shape in shapes:
            fan_in = shape[1] * shape[2] * shape[3]
            out.append(rng.normal(0, 1 / np.sqrt(fan_in), shape).astype(np.float32))
            out.append(rng.normal(0, 0.01, shape[0]).astype(np.float32))
        return out
    if kind == "nearest":  # pass the centre pixel through every layer into all r^2 sub-pixels
        w1, w2, w3 = (np.zeros(s, np.float32) for s in shapes)
        w1[0, 0, 2, 2] = 1.0
        w2[0, 0, 1, 1] = 1.0
        w3[:, 0, 1, 1] = 1.0
        return [w1, np.zeros(c1, np.float32), w2, np.zeros(c2, np.float32), w3,
                np.zeros(scale * scale, np.float32)]
    raise ValueError(f"unknown weights kind {kind!r} (use 'random' or 'nearest')")


def espcn_model(scale: int = 2, weights: str = "random", seed: int = 0, activation: str = "tanh",
                channels: tuple[int, int] = (64, 32), metadata: dict[str, str] | None = None,
                opset: int = 17):
    """The ESPCN as an in-memory, checked `onnx.ModelProto`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} (use {', '.join(ACTIVATIONS)})")
    act = ACTIVATIONS[activation]
    names = ["w1", "b1", "w2", "b2", "w3", "b3"]
    inits = [numpy_helper.from_array(a, n)
             for a, n in zip(espcn_weights(scale, weights, seed, channels), names)]
    nodes = [
        helper.make_node("Conv", ["lr", "w1", "b1"], ["c1"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node(act, ["c1"], ["a1"]),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node(act, ["c2"], ["a2"]),
        helper.make_node("Conv", ["a2", "w3", "b3"], ["c3"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["c3"], ["hr"], blocksize=scale, mode="CRD"),
    ]
    graph = helper.make_graph(
        nodes, "espcn",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("hr", TensorProto.FLOAT, ["N", 1, "HR", "WR"])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    meta = {"scale": str(scale),
            "arch": json.dumps({"scale": scale, "channels": list(channels), "kernels": [5, 3, 3],
                                "activation": activation}),
            "y_convention": "bt601-studio/255",
            "name": f"{weights}-x{scale}"}
    meta.update(metadata or {})
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    return model


def make_espcn_onnx(path: str | Path, scale: int = 2, weights: str = "random", seed: int = 0,
                    activation: str = "tanh", channels: tuple[int, int] = (64, 32),
                    metadata: dict[str, str] | None = None, opset: int = 17) -> Path:
    """Write `espcn_model(...)` to `path`; returns the path."""
    import onnx

    path = Path(path)
    onnx.save(espcn_model(scale, weights, seed, activation, channels, metadata, opset), path)
    return path
