"""Training configuration: one dataclass, JSON presets, typed command-line overrides."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

PRESETS = Path(__file__).parent / "presets"


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
    loss: str = "l1"                  # l1 | l2 | charbonnier
    steps: int = 20000
    batch: int = 32
    patch: int = 32                   # LR patch side; HR patch = patch * scale
    lr: float = 1e-3
    lr_min: float = 1e-5              # cosine decay from lr to lr_min
    warmup: int = 200
    augment: bool = True              # random flips and 90-degree rotations
    seed: int = 0
    threads: int = 1
    eval_every: int = 1000
    ckpt_every: int = 500
    init_from: str = ""               # checkpoint whose matching layers seed this run (e.g. x2 -> x3)
    holdout: int = 0                  # keep the last N images of the data for validation instead of `val`

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> tuple["TrainConfig", bool]:
        """Preset file (`--preset NAME|PATH`) then `--field value` overrides; returns (config, resume)."""
        p = argparse.ArgumentParser(description="Train ESPCN on a folder of images.")
        p.add_argument("--preset", default="", help="JSON preset name in trainer/presets or a path")
        p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
        for f in fields(cls):
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if "tuple" in kind:
                p.add_argument(f"--{f.name}", nargs="+", default=None)
            elif kind == "bool":
                p.add_argument(f"--{f.name}", type=lambda s: s.lower() in ("1", "true", "yes"), default=None)
            else:
                p.add_argument(f"--{f.name}", type={"int": int, "float": float}.get(kind, str), default=None)
        args = p.parse_args(argv)
        base = load_preset(args.preset) if args.preset else {}
        over = {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name) is not None}
        return cls.from_dict({**base, **over}), args.resume

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        for f in fields(cls):
            if f.name in d and "tuple" in str(f.type):
                d[f.name] = tuple(int(x) if f.name == "channels" else x for x in d[f.name])
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def load_preset(name: str) -> dict:
    """A preset is a JSON object of TrainConfig fields."""
    path = Path(name) if Path(name).suffix == ".json" else PRESETS / f"{name}.json"
    return json.loads(path.read_text())
