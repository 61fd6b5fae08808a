"""int8 quantization-aware training: fake-quantized convolutions, and the QDQ nodes they export to.

A quantized layer multiplies int8 by int8 (`vpdpbusd`, 4x the fp32 rate on AVX512-VNNI): its input is
held as uint8 over a fixed range and its weights as int8 per output channel. Tanh stays in float.
  input of the first conv   [0, 1] luma            uint8, scale 1/255, zero point 0 (8-bit codes exactly)
  input of later convs      tanh's [-1, 1]         uint8, scale 2/255, zero point 128
  weights                   per output channel     int8 symmetric, scale max|w| / 127 (recomputed each step)
By default (`--qat_ranges full`) the ranges are fixed, not learned: they cover the whole luma range and
tanh's whole range, so nothing a network can produce is clipped. With `--qat_ranges calibrated` a tanh
input is first divided per channel by `act_range`, the largest |value| each channel took on the training
pictures at the starting weights (`calibrate`): most channels never come near +-1, so their 256 codes were
spread over values they never take. The division is undone in the weights (conv(x / r, w * r) ==
conv(x, w)), so the int8 conv keeps one per-tensor input scale; it is exported as a Div before
QuantizeLinear, which OpenVINO fuses (conv still u8, no extra time measured). A value beyond its
channel's range is clipped there, as training saw it (with zero gradient, hence only from a trained
network, `init_from`). Training sees the rounding through PyTorch's fake-quantize ops (straight-through
gradients); the ONNX export writes the same arithmetic as QuantizeLinear/DequantizeLinear pairs,
which OpenVINO compiles to int8 kernels and ONNX Runtime and TensorRT can load.
"""
from __future__ import annotations

from typing import Callable

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
    """nn.Conv2d whose input and weights pass through int8 fake quantization (the float conv's state dict
    keys, plus `act_range` on a tanh input: per input channel, ones = tanh's whole range)."""

    layer: int = 0
    act_range: torch.Tensor

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        """A state without `act_range` (a float net, a checkpoint or int8 file from before calibrated
        ranges) loads as tanh's whole range: ones."""
        if self.layer > 0 and prefix + "act_range" not in state_dict:
            state_dict[prefix + "act_range"] = torch.ones_like(self.act_range)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def ranged_weight(self) -> torch.Tensor:
        """The weights the int8 conv holds: multiplied per input channel by the ranges its input is
        divided by (the weights themselves on the luma input)."""
        return self.weight if self.layer == 0 else self.weight * self.act_range.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, zero = act_qparams(self.layer)
        if self.layer > 0:
            x = x / self.act_range.view(1, -1, 1, 1)
        w = self.ranged_weight()
        xq = torch.fake_quantize_per_tensor_affine(x, scale, zero, QMIN, QMAX)
        s = weight_scales(w)
        wq = torch.fake_quantize_per_channel_affine(w, s, torch.zeros_like(s, dtype=torch.int32), 0, -WMAX, WMAX)
        return self._conv_forward(xq, wq, self.bias)


def reset_ranges(net: nn.Module) -> None:
    """Every tanh input back to tanh's whole range (`--qat_ranges full` after `init_from` a calibrated file)."""
    for m in net.modules():
        if isinstance(m, QuantConv2d) and m.layer > 0:
            m.act_range.fill_(1.0)


def quant_conv(layer: int, *args, **kwargs) -> QuantConv2d:
    """A QuantConv2d for conv number `layer` (which decides its input's range)."""
    conv = QuantConv2d(*args, **kwargs)
    conv.layer = layer
    if layer > 0:
        conv.register_buffer("act_range", torch.ones(conv.in_channels))
    return conv


RANGE_MIN = 1e-3  # a channel that never moved still gets a range (its codes then cover +-0.001)


@torch.no_grad()
def calibrate(net: nn.Module, run: Callable[[], None]) -> list[torch.Tensor]:
    """Set the `act_range` of every quantized conv on a tanh input to the largest |input| per channel seen
    while `run()` feeds the network (in [RANGE_MIN, 1]); returns those ranges. They are reset to ones
    first, so an earlier calibration cannot clip what a later quantized layer observes."""
    convs = [m for m in net.modules() if isinstance(m, QuantConv2d) and m.layer > 0]
    peaks = [torch.zeros_like(m.act_range) for m in convs]
    for m in convs:
        m.act_range.fill_(1.0)

    def watch(i: int) -> Callable:
        return lambda module, args: peaks[i].copy_(torch.maximum(peaks[i], args[0].abs().amax((0, 2, 3))))

    hooks = [m.register_forward_pre_hook(watch(i)) for i, m in enumerate(convs)]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    for m, peak in zip(convs, peaks):
        m.act_range.copy_(peak.clamp(RANGE_MIN, 1.0))
    return [m.act_range.clone() for m in convs]


def qdq_nodes(conv: QuantConv2d, x: str, w: str) -> tuple[list, list, str, str]:
    """ONNX (nodes, initializers, input name, weight name) that fake-quantize conv `x`/`w` as training did:
    a Div by the channel ranges first where they are not all ones (`w` then holds weights * ranges)."""
    from onnx import helper, numpy_helper

    scale, zero = act_qparams(conv.layer)
    nodes, inits = [], []
    if conv.layer > 0 and not bool((conv.act_range == 1).all()):
        r = conv.act_range.detach().numpy().astype(np.float32).reshape(1, -1, 1, 1)
        inits.append(numpy_helper.from_array(r, f"{w.removesuffix('.weight')}.act_range"))
        nodes.append(helper.make_node("Div", [x, inits[-1].name], [f"{x}.ranged"]))
        x = f"{x}.ranged"
    weight = conv.ranged_weight().detach()
    s = weight_scales(weight).numpy()
    wq = np.clip(np.rint(weight.numpy() / s[:, None, None, None]), -WMAX, WMAX).astype(np.int8)
    inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{x}.scale"),
             numpy_helper.from_array(np.array(zero, np.uint8), f"{x}.zero"),
             numpy_helper.from_array(wq, f"{w}.int8"),
             numpy_helper.from_array(s, f"{w}.scale"),
             numpy_helper.from_array(np.zeros(len(s), np.int8), f"{w}.zero")]
    nodes += [helper.make_node("QuantizeLinear", [x, f"{x}.scale", f"{x}.zero"], [f"{x}.q"]),
             helper.make_node("DequantizeLinear", [f"{x}.q", f"{x}.scale", f"{x}.zero"], [f"{x}.dq"]),
             helper.make_node("DequantizeLinear", [f"{w}.int8", f"{w}.scale", f"{w}.zero"], [f"{w}.dq"], axis=0)]
    return nodes, inits, f"{x}.dq", f"{w}.dq"
