"""fp32 -> fp16 ONNX conversion with float32 inputs/outputs kept (for strongly typed TensorRT).

TensorRT >= 11 and TensorRT-RTX have no FP16 builder flag: a network runs in the precision its
tensors declare. So for `fp16=1` the plugin builds from a copy of the ONNX whose float weights and
float compute are float16, with a Cast right after each float32 graph input and right before each
float32 graph output. The host side therefore always exchanges float32 buffers, whatever the
precision. Works for any graph built from float tensors (ESPCN: Conv, activations, DepthToSpace);
weights beyond the float16 range are clipped to +-65504.
"""
from __future__ import annotations

import numpy as np

FP16_MAX = 65504.0


def _to_fp16_tensor(tensor):
    """Float32 TensorProto -> float16 TensorProto with the same name (others returned as they are)."""
    from onnx import TensorProto, numpy_helper

    if tensor.data_type != TensorProto.FLOAT:
        return tensor
    arr = numpy_helper.to_array(tensor)
    half = np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)
    return numpy_helper.from_array(half, tensor.name)


def _convert_node_attrs(node) -> None:
    """Make Constant values and Cast targets float16 where they were float32."""
    from onnx import AttributeProto, TensorProto

    for attr in node.attribute:
        if attr.type == AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
            attr.t.CopyFrom(_to_fp16_tensor(attr.t))
        if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
            attr.i = TensorProto.FLOAT16


def convert_model_fp16(model):
    """Return a float16 copy of `model` (an `onnx.ModelProto`) with float32 graph I/O kept."""
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for i, init in enumerate(graph.initializer):
        graph.initializer[i].CopyFrom(_to_fp16_tensor(init))
    for node in graph.node:
        _convert_node_attrs(node)

    inits = {t.name for t in graph.initializer}
    renames: dict[str, str] = {}
    head = []
    for inp in graph.input:
        if inp.name in inits or inp.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        renames[inp.name] = f"{inp.name}__fp16"
        head.append(helper.make_node("Cast", [inp.name], [renames[inp.name]], to=TensorProto.FLOAT16,
                                     name=f"{inp.name}__to_fp16"))
    for node in graph.node:
        for j, name in enumerate(node.input):
            if name in renames:
                node.input[j] = renames[name]

    tail = []
    for outp in graph.output:
        if outp.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        half = f"{outp.name}__fp16"
        for node in graph.node:
            for j, name in enumerate(node.output):
                if name == outp.name:
                    node.output[j] = half
            for j, name in enumerate(node.input):  # an output also consumed inside the graph
                if name == outp.name:
                    node.input[j] = half
        tail.append(helper.make_node("Cast", [half], [outp.name], to=TensorProto.FLOAT,
                                     name=f"{outp.name}__to_fp32"))

    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # intermediate types changed; TensorRT/ORT re-infer them
    out.metadata_props.add(key="vs_espcn_precision", value="fp16")
    return out


def convert_bytes_fp16(onnx_bytes: bytes) -> bytes:
    """Serialized fp32 ONNX -> serialized fp16 ONNX (float32 I/O)."""
    import onnx

    return convert_model_fp16(onnx.load_from_string(onnx_bytes)).SerializeToString()
