"""Small ESPCN-shaped ONNX models built in the tests (no torch needed).

`make_espcn_onnx` writes a model that keeps the ONNX contract of docs/DESIGN.md: input `lr`
[N,1,H,W] -> conv 5x5/64 -> act -> conv 3x3/32 -> act -> conv 3x3/r^2 -> DepthToSpace(CRD) -> `hr`.
`weights="nearest"` with `activation="relu"` makes an exact nearest-neighbour upscaler for inputs >= 0
(the known-answer model); `weights="random"` gives a seeded random network.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _weights(scale: int, kind: str, seed: int, channels: tuple[int, int]) -> list[np.ndarray]:
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
    if kind == "nearest":
        w1, w2, w3 = (np.zeros(s, np.float32) for s in shapes)
        w1[0, 0, 2, 2] = 1.0
        w2[0, 0, 1, 1] = 1.0
        w3[:, 0, 1, 1] = 1.0
        zeros = [np.zeros(s[0], np.float32) for s in shapes]
        return [w1, zeros[0], w2, zeros[1], w3, zeros[2]]
    raise ValueError(f"unknown weights kind {kind!r}")


def make_espcn_onnx(path: str | Path, scale: int = 2, weights: str = "random", seed: int = 0,
                    activation: str = "tanh", channels: tuple[int, int] = (64, 32),
                    metadata: dict[str, str] | None = None, opset: int = 17) -> Path:
    """Write an ESPCN ONNX to `path` and return the path."""
    act = {"tanh": "Tanh", "relu": "Relu"}[activation]
    w = _weights(scale, weights, seed, channels)
    names = ["w1", "b1", "w2", "b2", "w3", "b3"]
    inits = [numpy_helper.from_array(a, n) for a, n in zip(w, names)]
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
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    meta = {
        "scale": str(scale),
        "arch": json.dumps({"scale": scale, "channels": list(channels), "kernels": [5, 3, 3],
                            "activation": activation}),
        "y_convention": "bt601-studio/255",
        "name": f"test-{weights}-x{scale}",
    }
    meta.update(metadata or {})
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path
