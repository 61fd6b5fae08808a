"""`python -m trainer.release --ckpt runs/x2/last.pt --out vs_espcn/models/espcn_x2.onnx`: measure, then export.

Evaluates the checkpoint by the standard protocol on Set5 and Set14 (natural models) or on the run's
hold-out split (`holdout` > 0, the line-art model), with bicubic, Lanczos and znedi3 (x2) baselines in the
same run, embeds the means in the ONNX `metrics` metadata, exports, and rewrites the model card beside
`--out` from the metadata of every ONNX in that folder. The card and the regression test therefore read
the same numbers.

`--remeasure FILE.onnx` measures an exported file again by the current protocol (e.g. after the border
convention changed) and rewrites only its `metrics`/`border`/`clamp`/`measured` metadata and the card; the weights
stay byte for byte.
"""
from __future__ import annotations

from ._deps import require

require(__name__)  # one sentence, not a traceback, when torch & co. are missing

import argparse
import json
import sys
from pathlib import Path

import torch

from .card import CARD_NAME, write_card
from .config import TrainConfig
from .eval import evaluate, format_table
from .data import BORDER, CLAMP
from .export import export, read_metadata, update_metadata
from .holdouts import holdout
from .train import split_data

EVAL = Path("../shared/data/eval")


def eval_sets(cfg: TrainConfig, also: tuple[str, ...] | list[str] = ()) -> dict[str, str | list[Path]]:
    """Which sets a model is measured on: the hold-out split if the run kept one (and the named hold-outs
    of `holdout_sets`), else Set5 and Set14; then the named hold-outs `also` (metadata `extra_sets`: a
    file measured on a set that came after its run, e.g. the anime model on manga).

    Paths are relative to the repository root (where ../shared sits), like the presets' data.
    """
    if cfg.holdout > 0:
        sets = {"holdout": split_data(cfg)[1], **{name: holdout(name) for name in cfg.holdout_sets}}
    elif cfg.holdout_sets:
        sets = {name: holdout(name) for name in cfg.holdout_sets}
    elif not EVAL.is_dir():
        raise SystemExit(f"evaluation sets not found at {EVAL.resolve()}: run from the repository root")
    else:
        sets = {"Set5": str(EVAL / "Set5"), "Set14": str(EVAL / "Set14")}
    return {**sets, **{name: holdout(name) for name in also if name not in sets}}


def has_znedi3() -> bool:
    """znedi3 is a baseline only when vapoursynth-znedi3 is installed."""
    try:
        import vapoursynth as vs

        return hasattr(vs.core, "znedi3")
    except ImportError:
        return False


def measure(ckpt: str, cfg: TrainConfig, also: tuple[str, ...] | list[str] = ()) -> dict:
    """{set: {method: [mean PSNR, mean SSIM]}} for the checkpoint and the baselines."""
    metrics = {}
    znedi3 = cfg.scale == 2 and has_znedi3()
    if cfg.scale == 2 and not znedi3:
        print("znedi3 baseline skipped: pip install vapoursynth-znedi3", file=sys.stderr)
    for name, data in eval_sets(cfg, also).items():
        table = evaluate(ckpt, data, cfg.scale, znedi3=znedi3, raw=True)
        print(f"== {name}\n{format_table(table)}", file=sys.stderr)
        metrics[name] = {m: [round(v, 4) for v in rows["mean"]] for m, rows in table.items()}
    return metrics


def remeasure(path: str, also: list[str]) -> None:
    """Measure an exported ONNX again with the run's own sets (and `also`, kept with those it had) and write
    the numbers into its metadata."""
    meta = read_metadata(path)
    cfg = TrainConfig.from_dict(json.loads(meta["training"])["config"])
    also = list(dict.fromkeys([*json.loads(meta.get("extra_sets", "[]")), *also]))
    flags = f" --sets {' '.join(also)}" if also else ""
    update_metadata(path, {"metrics": json.dumps(measure(path, cfg, also)), "border": BORDER, "clamp": CLAMP,
                           "extra_sets": json.dumps(also),
                           "measured": f"python -m trainer.release --remeasure {path}{flags}"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Measure a checkpoint and export it with its numbers.")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--ckpt", help="training checkpoint to measure and export to --out")
    what.add_argument("--remeasure", metavar="ONNX", help="exported file to measure again in place")
    ap.add_argument("--out", help="the ONNX to write (with --ckpt)")
    ap.add_argument("--name", default="", help="the model's name in its metadata (default: the run's name)")
    ap.add_argument("--sets", nargs="+", default=[], metavar="HOLDOUT",
                    help="named hold-outs (trainer.holdouts) to measure on as well, e.g. manga")
    ap.add_argument("--card", help="card to rewrite (default: MODEL_CARD.md beside the ONNX, so a trial release "
                    "to another folder never rewrites the shipped card from a partial set of models)")
    args = ap.parse_args(argv)
    if args.ckpt:
        if not args.out:
            ap.error("--ckpt needs --out")
        cfg = TrainConfig.from_dict(torch.load(args.ckpt, map_location="cpu", weights_only=True)["config"])
        export(args.ckpt, args.out, measure(args.ckpt, cfg, args.sets), args.name)
        update_metadata(args.out, {"extra_sets": json.dumps(args.sets)})
    else:
        remeasure(args.remeasure, args.sets)
    out_dir = Path(args.out or args.remeasure).parent
    write_card(out_dir, Path(args.card) if args.card else out_dir / CARD_NAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
