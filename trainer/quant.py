"""int8 quantization-aware training: fake-quantized convolutions, and the QDQ nodes they export to.

A quantized layer multiplies int8 by int8 (`vpdpbusd`, 4x the fp32 rate on AVX512-VNNI): its input is
held as uint8 over a fixed range and its weights as int8 per output channel. Tanh stays in float.
  input of the first conv   [0, 1] luma            uint8, scale 1/255, zero point 0 (8-bit codes exactly)
  input of later convs      tanh's [-1, 1]         uint8, scale 2/255, zero point 128
  weights                   per output channel     int8 symmetric, scale max|w| / 127 (recomputed each step)
The ranges are fixed, not learned: they cover the whole luma range and tanh's whole range, so nothing a
network can produce is clipped. Training sees the rounding through PyTorch's fake-quantize ops (straight-
through gradients); the ONNX export writes the same arithmetic as QuantizeLinear/DequantizeLinear pairs,
which OpenVINO compiles to int8 kernels and ONNX Runtime and TensorRT can load.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

QMIN, QMAX = 0, 255  # activations: uint8
WMAX = 127  # weights: int8 symmetric, [-127, 127]


def act_qparams(layer: int) -> tuple[float, int]:
    """(scale, zero point) of the uint8 input of conv `layer` (0 = the luma input, else a tanh output)."""
    return (1.0 / 255.0, 0) if layer == 0 else (2.0 / 255.0, 128)


def weight_scales(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 scales (float32), never zero."""
    return (weight.detach().abs().amax(dim=(1, 2, 3)) / WMAX).clamp_min(1e-12).float()


class QuantConv2d(nn.Conv2d):
    """nn.Conv2d whose input and weights pass through int8 fake quantization (same state dict keys)."""

    layer: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, zero = act_qparams(self.layer)
        xq = torch.fake_quantize_per_tensor_affine(x, scale, zero, QMIN, QMAX)
        s = weight_scales(self.weight)
        wq = torch.fake_quantize_per_channel_affine(self.weight, s, torch.zeros_like(s, dtype=torch.int32), 0,
                                                    -WMAX, WMAX)
        return self._conv_forward(xq, wq, self.bias)


def quant_conv(layer: int, *args, **kwargs) -> QuantConv2d:
    """A QuantConv2d for conv number `layer` (which decides its input's range)."""
    conv = QuantConv2d(*args, **kwargs)
    conv.layer = layer
    return conv


def qdq_nodes(conv: QuantConv2d, x: str, w: str) -> tuple[list, list, str, str]:
    """ONNX (nodes, initializers, input name, weight name) that fake-quantize conv `x`/`w` as training did."""
    from onnx import helper, numpy_helper

    scale, zero = act_qparams(conv.layer)
    s = weight_scales(conv.weight).numpy()
    wq = np.clip(np.rint(conv.weight.detach().numpy() / s[:, None, None, None]), -WMAX, WMAX).astype(np.int8)
    inits = [numpy_helper.from_array(np.array(scale, np.float32), f"{x}.scale"),
             numpy_helper.from_array(np.array(zero, np.uint8), f"{x}.zero"),
             numpy_helper.from_array(wq, f"{w}.int8"),
             numpy_helper.from_array(s, f"{w}.scale"),
             numpy_helper.from_array(np.zeros(len(s), np.int8), f"{w}.zero")]
    nodes = [helper.make_node("QuantizeLinear", [x, f"{x}.scale", f"{x}.zero"], [f"{x}.q"]),
             helper.make_node("DequantizeLinear", [f"{x}.q", f"{x}.scale", f"{x}.zero"], [f"{x}.dq"]),
             helper.make_node("DequantizeLinear", [f"{w}.int8", f"{w}.scale", f"{w}.zero"], [f"{w}.dq"], axis=0)]
    return nodes, inits, f"{x}.dq", f"{w}.dq"
