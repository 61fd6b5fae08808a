"""`python -m trainer.export --ckpt runs/x2/last.pt --out vs_espcn/models/espcn_x2.onnx`: checkpoint -> ONNX.

The graph is written node by node (Conv, activation, DepthToSpace CRD) so it keeps the contract of
docs/DESIGN.md exactly: input `lr` [N,1,H,W], output `hr` [N,1,rH,rW], opset 17, dynamic N/H/W, and the
model's scale/arch/training/metrics in `metadata_props`. Before writing, ONNX Runtime must reproduce the
PyTorch output within 1e-5 on a random input; otherwise nothing is written.
"""
from __future__ import annotations

from ._deps import require

require(__name__)  # one sentence, not a traceback, when torch & co. are missing

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from .data import BORDER, CLAMP
from .model import ESPCN, load_model
from .quant import QuantConv2d, qdq_nodes

OPSET = 17
TOLERANCE = 1e-5
# A quantized network: a value landing within float error of a rounding boundary may round the other way in
# ONNX Runtime than in PyTorch, moving that output by one int8 step of one weight (measured below 1e-3).
QUANT_TOLERANCE = 2e-3


def build_graph(net: ESPCN) -> onnx.ModelProto:
    """ONNX model equal to `net`: Conv/activation layers, then DepthToSpace in CRD mode (== PixelShuffle)."""
    nodes, inits, x = [], [], "lr"
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    acts = [m for m in net.body if not isinstance(m, torch.nn.Conv2d)]
    for i, conv in enumerate(convs):
        k, p = conv.kernel_size[0], conv.padding[0]
        inits.append(numpy_helper.from_array(conv.bias.detach().numpy(), f"conv{i}.bias"))
        if isinstance(conv, QuantConv2d):  # int8: QuantizeLinear/DequantizeLinear on the input and weights
            qnodes, qinits, x_in, w_in = qdq_nodes(conv, x, f"conv{i}.weight")
            nodes += qnodes
            inits += qinits
        else:
            inits.append(numpy_helper.from_array(conv.weight.detach().numpy(), f"conv{i}.weight"))
            x_in, w_in = x, f"conv{i}.weight"
        nodes.append(helper.make_node("Conv", [x_in, w_in, f"conv{i}.bias"], [f"conv{i}"],
                                      kernel_shape=[k, k], pads=[p] * 4))
        x = f"conv{i}"
        if i < len(acts):
            x = _activation(acts[i], i, x, nodes, inits)
    nodes.append(helper.make_node("DepthToSpace", [x], ["hr"], blocksize=net.cfg.scale, mode="CRD"))
    graph = helper.make_graph(
        nodes, "espcn",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("hr", TensorProto.FLOAT, ["N", 1, "rH", "rW"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="vs-espcn trainer")
    model.ir_version = 8
    return model


def _activation(act: torch.nn.Module, i: int, x: str, nodes: list, inits: list) -> str:
    """Append the ONNX node for one hidden activation; returns its output name."""
    out = f"act{i}"
    if isinstance(act, torch.nn.PReLU):
        slope = act.weight.detach().numpy().reshape(-1, 1, 1)
        inits.append(numpy_helper.from_array(slope, f"act{i}.slope"))
        nodes.append(helper.make_node("PRelu", [x, f"act{i}.slope"], [out]))
    else:
        op = {torch.nn.Tanh: "Tanh", torch.nn.ReLU: "Relu"}[type(act)]
        nodes.append(helper.make_node(op, [x], [out]))
    return out


def read_metadata(path: str | Path) -> dict[str, str]:
    """The `metadata_props` of an ONNX file as a dict."""
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def update_metadata(path: str | Path, updates: dict[str, str]) -> None:
    """Set `metadata_props` keys of an existing ONNX file in place (atomically); the graph is untouched."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props} | updates
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    _save(model, Path(path))


def _save(model: onnx.ModelProto, out_path: Path) -> None:
    """Write through a temp file + rename, so a reader never sees half a model."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(f".tmp{os.getpid()}")
    onnx.save(model, tmp)
    os.replace(tmp, out_path)


def parity_error(net: ESPCN, model: onnx.ModelProto, seed: int = 0) -> float:
    """Max |torch - onnxruntime| on a random odd-sized batch."""
    import onnxruntime as ort

    x = np.random.default_rng(seed).random((2, 1, 37, 53), dtype=np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return float(np.abs(sess.run(None, {"lr": x})[0] - ref).max())


OV_TOLERANCE = 1e-2  # OpenVINO's int8 kernels (fp32 elsewhere) against torch fake quantization: 2.5 8-bit codes


_OV_RUN = """
import sys, numpy as np, openvino as ov
core = ov.Core()
compiled = core.compile_model(core.read_model(sys.argv[1]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
np.save(sys.argv[3], compiled({0: np.load(sys.argv[2])})[0])
"""


def cpu_has_vnni() -> bool:
    """Does this CPU have the int8 dot products (VNNI / AMX) OpenVINO's int8 kernels run exactly on?
    The flags are the plugin's `vs_espcn.precision.CPU_FLAGS["int8"]`, kept here rather than imported:
    the trainer shares only the ONNX file with the plugin."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return bool(set(flags) & {"avx512_vnni", "avx_vnni", "amx_int8"})


def halved_codes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose int8 weight codes are halved (|w| <= 63): no pair of u8 x s8 products then overflows
    the int16 sums of `vpmaddubsw`, the instruction OpenVINO's int8 kernels use without VNNI."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for t in copy.graph.initializer:
        if t.name.endswith(".weight.int8"):
            codes = numpy_helper.to_array(t).astype(np.int32)
            t.CopyFrom(numpy_helper.from_array(np.clip(np.rint(codes / 2), -63, 63).astype(np.int8), t.name))
    return copy


def openvino_parity_error(net: ESPCN, model: onnx.ModelProto, seed: int = 0) -> float:
    """Max |reference - OpenVINO| (int8 kernels, fp32 elsewhere) on a random plane. A QDQ model must run in
    OpenVINO's int8 kernels as it trained, or the release would ship numbers nobody gets.

    With VNNI the reference is torch's fake quantization of the net itself. Without it OpenVINO sums pairs
    of u8 x s8 products in int16 with saturation (shipped twins: up to 0.04 off on noise, exact once
    |w| <= 63; the plugin refuses int8 on such CPUs), so the check runs `halved_codes(model)` against ONNX
    Runtime's float arithmetic of the same file, which `parity_error` ties to torch: it still proves that
    OpenVINO reads the graph (ranges, scales, zero points) as trained.
    OpenVINO runs in a child process: its Python module will not load where vs-mlrt's ov plugin is."""
    x = np.random.default_rng(seed).random((1, 1, 37, 53), dtype=np.float32)
    if cpu_has_vnni():
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
    else:
        import onnxruntime as ort

        model = halved_codes(model)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        ref = sess.run(None, {"lr": x})[0]
        print("no VNNI here: OpenVINO's int8 parity checked with the weight codes halved (int16 sums "
              "saturate without VNNI)", file=sys.stderr)
    return float(np.abs(_openvino_run(model, x) - ref).max())


def _openvino_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """OpenVINO CPU (fp32 outside the int8 layers) on `x`, in a child process."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, name) for name in ("m.onnx", "x.npy", "y.npy")]
        onnx.save(model, paths[0])
        np.save(paths[1], x)
        res = subprocess.run([sys.executable, "-c", _OV_RUN, *paths], capture_output=True, text=True,
                             timeout=300)
        if res.returncode != 0:
            tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"refusing to export: OpenVINO cannot run the int8 model ({tail}); "
                             "an int8 export needs openvino (pip install openvino)")
        return np.load(paths[2])


def export(ckpt_path: str, out: str, metrics: dict | None = None, name: str = "") -> Path:
    """Write the ONNX for a checkpoint after the parity check; returns the path."""
    net = load_model(ckpt_path)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model = build_graph(net)
    onnx.checker.check_model(model)
    err = parity_error(net, model)
    tolerance = QUANT_TOLERANCE if net.cfg.quant else TOLERANCE
    if not err <= tolerance:
        raise SystemExit(f"refusing to export: ONNX Runtime differs from PyTorch by {err:.3g} > {tolerance}")
    if net.cfg.quant:
        ov_err = openvino_parity_error(net, model)
        if not ov_err <= OV_TOLERANCE:
            raise SystemExit(f"refusing to export: OpenVINO int8 differs from PyTorch fake quantization by "
                             f"{ov_err:.3g} > {OV_TOLERANCE}")
    cfg = ckpt["config"]
    meta = {
        "scale": str(net.cfg.scale),
        "arch": json.dumps(dataclasses.asdict(net.cfg)),
        "y_convention": "bt601-studio/255",
        "border": BORDER,
        "clamp": CLAMP,
        "name": name or cfg.get("name", Path(out).stem),
        "training": json.dumps({"data": cfg["data"], "steps": ckpt["step"], "config": cfg,
                                "seconds": ckpt["history"].get("seconds"),
                                "commands": ckpt["history"].get("commands", []),
                                "parent": ckpt["history"].get("parent"),
                                "border": ckpt["history"].get("border")}),
        "metrics": json.dumps(metrics or {}),
    }
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    out_path = Path(out)
    _save(model, out_path)
    print(f"wrote {out_path} (parity {err:.2g})", file=sys.stderr)
    return out_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Export a training checkpoint to the plugin's ONNX format.")
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="")
    ap.add_argument("--metrics", default="", help="JSON file of measured metrics to embed")
    args = ap.parse_args(argv)
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else None
    export(args.ckpt, args.out, metrics, args.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
