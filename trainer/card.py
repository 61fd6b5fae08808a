"""The model card, rendered from the metadata inside the shipped ONNX files (one source of truth)."""
from __future__ import annotations

from ._deps import require

require(__name__)  # one sentence, not a traceback, when torch & co. are missing

import json
from pathlib import Path

from .data import BORDER
from .export import read_metadata

CARD_NAME = "MODEL_CARD.md"  # the card sits beside the ONNX files it describes

HEADER = """# vs-espcn model card

Every number below is read from the `metadata_props` of the ONNX file it describes; they were measured by
`python -m trainer.release` (the protocol of `trainer/eval.py`: HR mod-cropped, LR = antialiased bicubic
a=-0.5 downscale of the 8-bit RGB rounded to 8 bits, Y = BT.601 studio-swing luma, PSNR on 8-bit Y after
cropping `scale` pixels per border, SSIM of Wang et al. 2004). `tests/test_shipped_models.py` re-measures
them and fails if a file drifts by more than 0.02 dB.

Architecture (all files): ESPCN (Shi et al. 2016) conv 5x5/64 - tanh - conv 3x3/32 - tanh - conv 3x3/r^2 -
PixelShuffle (ONNX DepthToSpace CRD), one luma channel; input Y/255 in the studio-swing convention. At the
picture's edge the network sees the picture mirrored by its receptive radius, edge pixel repeated
(`border = symmetric` in the metadata): in the plugin, in these measurements and, since that change, in
`--context` training patches (each run's recipe says which edge its patches met). A file whose numbers
were "measured again" keeps the weights of runs from before the change. "espcn" is the output as the
plugin gives it by default, limited to the range of the LR picture (`clamp = source-range`);
"espcn_noclamp" is the network alone (`clamp=0`).
"""


def describe(path: Path) -> str:
    """One section per ONNX file: data, command, steps, time, measured table."""
    meta = read_metadata(path)
    training, metrics = json.loads(meta["training"]), json.loads(meta["metrics"])
    lines = [f"## {path.name} (x{meta['scale']}, `{meta['name']}`)", ""]
    quant = json.loads(meta.get("arch", "{}")).get("quant")
    if quant:
        ranges = training.get("config", {}).get("qat_ranges", "full")
        held = "over per-channel ranges calibrated on the training pictures" if ranges == "calibrated" else \
            "over tanh's whole range"
        lines.append(f"- int8: conv layer(s) {', '.join(map(str, quant))} quantized (QDQ: uint8 input {held}, int8 "
                     "per-channel weights), trained with `--qat`; `precision=\"int8\"` runs this file")
    if meta.get("measured"):
        lines.append(f"- numbers measured again by `{meta['measured']}` (current protocol; same weights)")
    lines += _training_lines(training)
    if training.get("parent"):
        lines.append(f"- in all: {_total(training, 'steps')} steps, "
                     f"{_hours(_total(training, 'seconds'))} of training on 2 shared CPU cores")
    lines += ["", "| set | method | Y-PSNR (dB) | SSIM |", "|---|---|---|---|"]
    for set_name, rows in metrics.items():
        for method, (p, s) in rows.items():
            lines.append(f"| {set_name} | {method} | {p:.2f} | {s:.4f} |")
    return "\n".join(lines) + "\n"


def _context(cfg: dict, training: dict) -> str:
    """How the run's patches were fed: with surroundings (and, since the mirrored border, past the edge)."""
    if not cfg.get("context"):
        return ""
    edge = {BORDER: "mirrored", f"zero-then-{BORDER}": "zero-padded, after a resume mirrored"}.get(
        training.get("border"), "zero-padded")
    return f" with their surroundings (--context; {edge} past the picture's edge)"


def _training_lines(training: dict, depth: int = 0) -> list[str]:
    """Data, recipe, commands, steps and time of one run, then (indented) of the run it continued."""
    cfg, pad = training["config"], "  " * depth
    commands = training.get("commands") or ["not recorded"]
    holdout = f" minus a seeded hold-out of {cfg['holdout']} images" if cfg.get("holdout") else ""
    if cfg.get("holdout_sets"):
        holdout += (f"; measured on the named hold-outs {', '.join(cfg['holdout_sets'])} (`trainer/holdouts.py`; "
                    "no run trains on their pictures)")
    extra = f"; training only: {', '.join(cfg['extra'])}" if cfg.get("extra") else ""
    shares = cfg.get("extra_share") or []
    shares = shares if isinstance(shares, list) else [shares]  # runs before per-folder shares saved one number
    if extra and len(shares) == 1 and shares[0]:
        extra += f" ({shares[0]:.0%} of the patches)"
    elif extra and any(shares):
        extra += " (shares of the patches: " + ", ".join(
            f"{Path(f).name} {s:.0%}" for f, s in zip(cfg["extra"], shares) if s) + "; the rest by area)"
    lines = [f"{pad}- data: {', '.join(cfg['data'])}{holdout}{extra}",
             f"{pad}- recipe: {cfg['loss']} loss, batch {cfg['batch']} of {cfg['patch']}px LR patches"
             f"{_context(cfg, training)}, Adam "
             f"{cfg['lr']}->{cfg['lr_min']} cosine over {cfg['steps']} steps, flips/rotations: {cfg['augment']}",
             f"{pad}- commands (in order): " + "; ".join(f"`{c}`" for c in commands),
             f"{pad}- steps: {training['steps']}; training time on 2 shared CPU cores: "
             f"{_hours(training.get('seconds'))}"]
    parent = training.get("parent")
    if parent:
        lines.append(f"{pad}- continued from the weights of this earlier run (`--init_from`, fresh optimizer):")
        lines += _training_lines(parent, depth + 1)
    return lines


def _total(training: dict | None, key: str) -> float:
    """`key` summed over a run and the runs it continued from."""
    if not training:
        return 0
    return (training.get(key) or 0) + _total(training.get("parent"), key)


def _hours(seconds: float | None) -> str:
    return f"{seconds / 3600:.2f} h" if seconds else "not recorded"


NAMED_MODELS = ("anime", "manga")  # the plugin's model= names of the x2-only files (espcn_x2_<name>.onnx)
HISTORY = "## Training history"  # a hand-written last section of the card, kept verbatim by --write


def kept_history(models_dir: Path) -> str:
    """The card's hand-written "Training history" section (from its heading to the end), or "".

    Everything above it is rendered from the ONNX metadata; the history (the phases tried and what each
    gave, numbers of their time) exists in no file's metadata, so a rewrite keeps it as it is."""
    card = models_dir / CARD_NAME
    text = card.read_text() if card.is_file() else ""
    at = text.find("\n" + HISTORY + "\n")
    return text[at:] if at >= 0 else ""


def render_card(models_dir: Path) -> str:
    """The card for every `*.onnx` in `models_dir`, then its kept Training history section."""
    return "\n".join([HEADER] + [describe(p) for p in sorted(models_dir.glob("*.onnx"))]) + kept_history(models_dir)


def write_card(models_dir: Path, out: Path) -> None:
    """Rewrite the card `out` from every `*.onnx` in `models_dir`."""
    out.write_text(render_card(models_dir))


def summary_rows(models_dir: Path) -> str:
    """Markdown rows (file, model=, sets, Upscale output / network alone / bicubic / Lanczos / znedi3 Y-PSNR)
    for the README's Models table."""
    rows = []
    for path in sorted(models_dir.glob("*.onnx")):
        meta = read_metadata(path)
        metrics = json.loads(meta["metrics"])
        named = [n for n in NAMED_MODELS if f"_{n}" in path.stem]
        arg = f'"{named[0]}"' if named else f'"" (scale={meta["scale"]})'
        cols = [_psnr_column(metrics, m) for m in ("espcn", "espcn_noclamp", "bicubic", "lanczos", "znedi3")]
        rows.append(f"| `{path.name}` | `{arg}` | {' / '.join(metrics)} | **{cols[0]}** | "
                    + " | ".join(cols[1:]) + " |")
    return "\n".join(rows)


def _psnr_column(metrics: dict, method: str) -> str:
    """'a / b' mean PSNRs of `method` over the sets, or a dash when it was not measured."""
    vals = [rows[method][0] for rows in metrics.values() if method in rows]
    return " / ".join(f"{v:.2f}" for v in vals) if vals else "–"


def main(argv: list[str] | None = None) -> int:
    """`python -m trainer.card [FOLDER] [--write]`: print the README rows, or rewrite FOLDER/MODEL_CARD.md.

    `--write` is for files released to a trial folder and then copied into `vs_espcn/models`.
    """
    import argparse

    ap = argparse.ArgumentParser(description="README rows or the model card from the ONNX metadata.")
    ap.add_argument("folder", nargs="?", default="vs_espcn/models", type=Path)
    ap.add_argument("--write", action="store_true", help="rewrite FOLDER/MODEL_CARD.md instead of printing rows")
    args = ap.parse_args(argv)
    if not any(args.folder.glob("*.onnx")):
        ap.error(f"no .onnx files in {args.folder}")
    if args.write:
        write_card(args.folder, args.folder / CARD_NAME)
    else:
        print(summary_rows(args.folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
