"""Training configuration: one dataclass, JSON presets, typed command-line overrides."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

PRESETS = Path(__file__).parent / "presets"
LOSSES = ("l1", "l2", "charbonnier", "logmse", "picture_db")
QAT_RANGES = ("full", "calibrated")
CALIBRATION_PICTURES = 200  # training pictures (evenly spaced) that calibrate --qat_ranges calibrated


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; saved in every checkpoint so `--resume` continues the same run."""

    scale: int = 2
    data: tuple[str, ...] = ("../shared/data/train",)
    val: str = "../shared/data/eval/Set5"
    out: str = "runs/x2"
    name: str = "espcn_x2"
    activation: str = "tanh"
    channels: tuple[int, ...] = (64, 32)
    loss: str = "l1"                  # l1 | l2 | charbonnier | logmse | picture_db (l2, each picture by its dB)
    steps: int = 20000
    batch: int = 32
    patch: int = 32                   # LR patch side; HR patch = patch * scale
    lr: float = 1e-3
    lr_min: float = 1e-5              # cosine decay from lr to lr_min
    warmup: int = 200
    augment: bool = True              # random flips and 90-degree rotations
    context: bool = False             # feed each patch its real surroundings (net radius), loss on the patch only
    seed: int = 0
    threads: int = 1
    eval_every: int = 1000
    ckpt_every: int = 500
    init_from: str = ""               # checkpoint or exported .onnx whose matching layers seed this run
    holdout: int = 0                  # keep a seeded N images of the data for validation instead of `val`
    extra: tuple[str, ...] = ()       # training-only folders: never drawn into the hold-out; copies of a
                                      # validation image (same pixels) are skipped
    extra_share: tuple[float, ...] = ()  # share of patches drawn from `extra`: one value for all of it, or
                                      # one per extra folder (0 or none: by area, like the rest)
    holdout_sets: tuple[str, ...] = ()  # named second hold-outs (trainer.holdouts, e.g. manga) the run is
                                      # also measured on; every named hold-out is kept out of training anyway
    qat: tuple[int, ...] = ()         # conv layers trained with int8 fake quantization (trainer.quant), e.g. 1
    distill: bool = False             # learn the --init_from network's output, not the HR pictures (for --qat:
                                      # the int8 net mimics its fp32 parent, so it cannot drift off it)
    qat_ranges: str = "full"          # int8 tanh inputs over tanh's whole [-1, 1] ("full") or over each
                                      # channel's largest |value| on the training pictures ("calibrated")

    def __post_init__(self) -> None:
        """Reject bad values before any data is loaded."""
        if self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {self.scale}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if min(self.steps, self.batch, self.patch, self.eval_every, self.ckpt_every, self.threads) < 1:
            raise ValueError("steps, batch, patch, eval_every, ckpt_every and threads must be >= 1")
        if any(not 0.0 <= s < 1.0 for s in self.extra_share) or sum(self.extra_share) >= 1.0:
            raise ValueError(f"extra_share values must be in [0, 1) with a sum under 1, got {list(self.extra_share)}")
        if len(self.extra_share) > 1 and len(self.extra_share) != len(self.extra):
            raise ValueError(f"extra_share: {len(self.extra_share)} values for {len(self.extra)} extra folders "
                             "(give one value, or one per folder)")
        if self.holdout < 0:
            raise ValueError(f"holdout must be >= 0, got {self.holdout}")
        if any(not 0 <= q <= len(self.channels) for q in self.qat):
            raise ValueError(f"qat layers must be conv indices 0..{len(self.channels)}, got {list(self.qat)}")
        from .holdouts import HOLDOUTS

        if unknown := sorted(set(self.holdout_sets) - set(HOLDOUTS)):
            raise ValueError(f"unknown holdout_sets {unknown}; known: {', '.join(sorted(HOLDOUTS))}")
        if self.qat_ranges not in QAT_RANGES:
            raise ValueError(f"qat_ranges must be one of {', '.join(QAT_RANGES)}, got {self.qat_ranges!r}")
        if self.qat_ranges == "calibrated" and not (any(q > 0 for q in self.qat) and self.init_from):
            raise ValueError("qat_ranges calibrated needs a --qat layer on a tanh input (1 or more) and "
                             "--init_from (the ranges are measured on the starting network)")
        if self.distill and not self.init_from:
            raise ValueError("distill needs init_from (the network whose output is learnt)")

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> tuple["TrainConfig", bool]:
        """Preset file (`--preset NAME|PATH`) then `--field value` overrides; returns (config, resume).

        With `--resume` the config saved in `<out>/last.pt` wins and only the flags given on this
        command line change it (each change is reported), so a resumed run continues the same run.
        """
        p = argparse.ArgumentParser(description="Train ESPCN on a folder of images.")
        p.add_argument("--preset", default="", help="JSON preset name in trainer/presets or a path")
        p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
        for f in fields(cls):
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if "tuple" in kind:
                p.add_argument(f"--{f.name}", nargs="+", default=None)
            elif kind == "bool":
                p.add_argument(f"--{f.name}", type=_bool, default=None)
            else:
                p.add_argument(f"--{f.name}", type={"int": int, "float": float}.get(kind, str), default=None)
        args = p.parse_args(argv)
        over = {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name) is not None}
        try:
            cfg = cls.from_dict({**(load_preset(args.preset) if args.preset else {}), **over})
            return (cfg.resumed(over) if args.resume else cfg), args.resume
        except ValueError as exc:
            p.error(str(exc))
            raise  # unreachable: p.error exits

    def resumed(self, over: dict) -> "TrainConfig":
        """The config saved in `<out>/last.pt` with the explicit overrides `over` applied."""
        last = Path(self.out) / "last.pt"
        if not last.exists():
            print(f"--resume: no checkpoint at {last}, starting a new run", file=sys.stderr)
            return self
        import torch

        saved = torch.load(last, map_location="cpu", weights_only=True)["config"]
        for key, value in over.items():
            if key in saved and list(_as_list(saved[key])) != list(_as_list(value)):
                print(f"--resume: {key} changed from {saved[key]} to {value}", file=sys.stderr)
        return TrainConfig.from_dict({**saved, **over})

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a JSON-like dict (lists become tuples); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys: {', '.join(sorted(names))}")
        d = dict(d)
        for f in fields(cls):
            if f.name in d and "tuple" in str(f.type):
                cast = {"channels": int, "qat": int, "extra_share": float}.get(f.name, lambda x: x)
                d[f.name] = tuple(cast(x) for x in _as_list(d[f.name]))
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain dict (saved in checkpoints and in the ONNX `training` metadata)."""
        return asdict(self)


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _bool(text: str) -> bool:
    """Strict boolean flag value."""
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def load_preset(name: str) -> dict:
    """A preset is a JSON object of TrainConfig fields (a name in trainer/presets or a .json path)."""
    path = Path(name) if Path(name).suffix == ".json" else PRESETS / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.json")))
        raise ValueError(f"preset {name!r} not found ({path}); presets: {known}")
    return json.loads(path.read_text())
