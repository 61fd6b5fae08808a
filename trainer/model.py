"""ESPCN (Shi et al. 2016): conv 5x5/64 -> conv 3x3/32 -> conv 3x3/r^2 -> PixelShuffle, on luma."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .data import run_bordered
from .quant import calibrate, quant_conv

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "prelu": nn.PReLU}


@dataclass(frozen=True)
class ESPCNConfig:
    """Architecture; stored in every checkpoint and in every exported ONNX (`arch` metadata)."""

    scale: int = 2
    channels: tuple[int, ...] = (64, 32)
    kernels: tuple[int, ...] = (5, 3, 3)
    activation: str = "tanh"
    in_channels: int = 1
    quant: tuple[int, ...] = ()  # conv layers that run int8 (trainer.quant), e.g. (1,) for the 64->32 layer

    def __post_init__(self) -> None:
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {self.scale}")
        if len(self.kernels) != len(self.channels) + 1:
            raise ValueError("need one kernel per hidden layer plus the output layer")
        if self.in_channels != 1:
            raise ValueError("ESPCN here works on luma only: in_channels must be 1")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")
        if any(not 0 <= q < len(self.kernels) for q in self.quant):
            raise ValueError(f"quant layers must be conv indices 0..{len(self.kernels) - 1}, got {self.quant}")

    @property
    def radius(self) -> int:
        """Receptive-field radius in LR pixels (what a tile overlap must cover)."""
        return sum(k // 2 for k in self.kernels)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "ESPCNConfig":
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        d["kernels"] = tuple(d["kernels"])
        d["quant"] = tuple(int(q) for q in d.get("quant", ()))
        return cls(**d)


class ESPCN(nn.Module):
    """Feature layers at LR resolution, then one sub-pixel convolution to r^2 channels and a shuffle."""

    def __init__(self, cfg: ESPCNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = (cfg.in_channels, *cfg.channels, cfg.in_channels * cfg.scale**2)
        layers: list[nn.Module] = []
        for i, k in enumerate(cfg.kernels):
            conv = quant_conv(i, widths[i], widths[i + 1], k, padding=k // 2) if i in cfg.quant else \
                nn.Conv2d(widths[i], widths[i + 1], k, padding=k // 2)
            layers.append(conv)
            if i < len(cfg.kernels) - 1:
                act = ACTIVATIONS[cfg.activation]
                layers.append(act(widths[i + 1]) if cfg.activation == "prelu" else act())
        self.body = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(cfg.scale)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Paper-style init: small normal weights (tanh-friendly), zero bias; last layer smaller."""
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        for i, conv in enumerate(convs):
            fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
            std = (1.0 / fan_in) ** 0.5 * (0.1 if i == len(convs) - 1 else 1.0)
            nn.init.normal_(conv.weight, 0.0, std)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) luma in [0, 1] -> (N, 1, rH, rW)."""
        return self.shuffle(self.body(x))


def load_model(path: str) -> ESPCN:
    """The network stored in a training checkpoint (`model` state dict + `arch` dict)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    net = ESPCN(ESPCNConfig.from_dict(ckpt["arch"]))
    net.load_state_dict(ckpt["model"])
    return net.eval()


def state_from_onnx(path: str) -> dict[str, torch.Tensor]:
    """The PyTorch state dict held by an ONNX file this trainer exported (its `convN`/`actN` initializers).

    This is what lets a fresh checkout continue from the shipped weights: the ONNX files are the only
    weights the repository keeps. Initializers map back to `body.<index>` in layer order. An int8 (QDQ)
    layer's weights come back dequantized (`convN.weight.int8` x `convN.weight.scale`, divided by its
    `convN.act_range` where the input ranges were calibrated), as it ran, with those ranges.
    """
    import onnx
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    for name in [n for n in inits if n.endswith(".weight.int8")]:
        base, scale = name.removesuffix(".int8"), inits[name.replace(".int8", ".scale")]
        weight = inits[name].astype(np.float32) * scale.reshape(-1, 1, 1, 1).astype(np.float32)
        ranges = inits.get(base.replace(".weight", ".act_range"))  # calibrated input ranges (trainer.quant)
        inits[base] = weight if ranges is None else weight / ranges.reshape(1, -1, 1, 1)
    state: dict[str, torch.Tensor] = {}
    for name, value in inits.items():
        m = re.fullmatch(r"(conv|act)(\d+)\.(weight|bias|slope|act_range)", name)
        if not m:
            continue
        kind, i, field = m.group(1), int(m.group(2)), m.group(3)
        arr = torch.from_numpy(np.array(value, copy=True))
        if kind == "conv":
            state[f"body.{2 * i}.{field}"] = arr.reshape(-1) if field == "act_range" else arr
        else:  # PReLU slope, stored (C, 1, 1) for broadcasting
            state[f"body.{2 * i + 1}.weight"] = arr.reshape(-1)
    if not state:
        raise ValueError(f"{path}: no convN.weight/convN.bias initializers (not a vs-espcn trainer export)")
    return state


def calibrate_ranges(net: ESPCN, planes: "list[np.ndarray]") -> list[torch.Tensor]:
    """Per-channel input ranges of the net's quantized tanh inputs from LR planes run as the plugin runs
    them (trainer.quant.calibrate)."""
    def run() -> None:
        for y in planes:
            upscale_plane(net, y)

    return calibrate(net, run)


@torch.no_grad()
def upscale_plane(net: ESPCN, lr_y: "np.ndarray", clamp: bool = True) -> "np.ndarray":
    """Run the network on one (H, W) float32 plane as the plugin does: its edge extended by `data.BORDER`
    and, with `clamp`, the output limited to the plane's range (`data.CLAMP`)."""
    def run(y: "np.ndarray") -> "np.ndarray":
        x = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None, None]
        return net(x.to(next(net.parameters()).device))[0, 0].cpu().numpy()

    return run_bordered(run, lr_y, net.cfg.radius, net.cfg.scale, clamp)
