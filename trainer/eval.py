"""`python -m trainer.eval --model ckpt.pt|model.onnx --data DIR --scale r`: the standard SR table.

Per image and mean Y-PSNR / SSIM of the model next to bicubic and Lanczos upscaling of the same LR input
(and znedi3 doubling at x2 with `--znedi3`), by the protocol in `trainer.data` / `trainer.metrics`.
"""
from __future__ import annotations

from ._deps import require

require(__name__)  # one sentence, not a traceback, when torch & co. are missing

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from .data import Pair, load_pairs, resize_float, run_bordered
from .metrics import psnr, ssim

Upscaler = Callable[[np.ndarray], np.ndarray]


def model_upscaler(path: str, clamp: bool = True) -> tuple[Upscaler, int]:
    """A (H, W) -> (rH, rW) function and its scale, from a training checkpoint or an exported ONNX.

    Both run the network as the plugin does: on the plane extended by `data.BORDER`, the output limited to
    the plane's range (`data.CLAMP`) unless `clamp` is False (the network alone)."""
    if path.endswith(".onnx"):
        import onnxruntime as ort

        from .export import read_metadata
        from .model import ESPCNConfig

        meta = read_metadata(path)
        radius, scale = ESPCNConfig.from_dict(json.loads(meta["arch"])).radius, int(meta["scale"])
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        run = lambda y: sess.run(None, {"lr": y[None, None].astype(np.float32)})[0][0, 0]  # noqa: E731
        return (lambda y: run_bordered(run, y, radius, scale, clamp)), scale
    from .model import load_model, upscale_plane

    net = load_model(path)
    return (lambda y: upscale_plane(net, y, clamp)), net.cfg.scale


def kernel_upscaler(kernel: str, scale: int) -> Upscaler:
    """Antialiased Pillow resize (bicubic a=-0.5 or Lanczos3) of the LR Y plane."""
    return lambda y: resize_float(y, y.shape[1] * scale, y.shape[0] * scale, kernel)


def znedi3_upscaler() -> Upscaler:
    """nnedi3 doubling (znedi3 nsize=0 nns=4 qual=2) both ways, shifted back onto the centre-aligned grid."""
    import vapoursynth as vs

    core = vs.core

    def double(clip: vs.VideoNode) -> vs.VideoNode:
        for _ in range(2):
            clip = core.znedi3.nnedi3(clip, field=0, dh=True, nsize=0, nns=4, qual=2).std.Transpose()
        return clip

    def run(y: np.ndarray) -> np.ndarray:
        h, w = y.shape
        blank = core.std.BlankClip(width=w, height=h, format=vs.GRAYS, length=1)
        frame = blank.get_frame(0).copy()
        np.asarray(frame[0])[:] = y
        clip = blank.std.ModifyFrame(blank, lambda n, f: frame)
        # The doubled grid is off the centre-aligned one by half an HR pixel per axis; the sign was
        # measured (Set5: 34.79 dB with +0.5, 26.5 dB with -0.5), which reproduces the known figure.
        out = core.resize.Spline36(double(clip), 2 * w, 2 * h, src_top=0.5, src_left=0.5)
        return np.array(out.get_frame(0)[0], copy=True)

    return run


def score(pairs: list[Pair], up: Upscaler, scale: int) -> list[tuple[float, float]]:
    """(PSNR, SSIM) of `up` on every pair."""
    out = []
    for p in pairs:
        sr = up(p.lr_y)
        out.append((psnr(sr, p.hr_y, scale), ssim(sr, p.hr_y, scale)))
    return out


def evaluate(model: str | None, data: str | list[Path], scale: int | None, znedi3: bool = False,
             raw: bool = False) -> dict:
    """{method: {image: (psnr, ssim)}, ...} including a "mean" row per method.

    `data` is a folder or an explicit list of image paths (e.g. a training run's hold-out split). "espcn" is
    the model as the plugin runs it by default; `raw` adds "espcn_noclamp", its output without `data.CLAMP`.
    """
    methods: dict[str, Upscaler] = {}
    if model:
        up, mscale = model_upscaler(model)
        if scale and scale != mscale:
            raise SystemExit(f"--scale {scale} but the model is x{mscale}")
        scale = mscale
        if raw:
            methods["espcn_noclamp"] = model_upscaler(model, clamp=False)[0]
        methods["espcn"] = up
    scale = scale or 2
    methods = {"bicubic": kernel_upscaler("bicubic", scale), "lanczos": kernel_upscaler("lanczos", scale),
               **({"znedi3": znedi3_upscaler()} if znedi3 and scale == 2 else {}), **methods}
    pairs = load_pairs("", scale, data) if isinstance(data, list) else load_pairs(data, scale)
    table: dict = {}
    for name, up in methods.items():
        rows = dict(zip((p.name for p in pairs), score(pairs, up, scale)))
        rows["mean"] = tuple(float(np.mean([r[i] for r in rows.values()])) for i in range(2))
        table[name] = rows
    return table


def format_table(table: dict) -> str:
    """A fixed-width PSNR/SSIM table, one row per image, one column pair per method."""
    methods = list(table)
    names = list(next(iter(table.values())))
    head = f"{'image':14s}" + "".join(f"{m + ' PSNR':>14s}{'SSIM':>8s}" for m in methods)
    lines = [head, "-" * len(head)]
    for n in names:
        lines.append(f"{n:14s}" + "".join(f"{table[m][n][0]:14.3f}{table[m][n][1]:8.4f}" for m in methods))
    return "\n".join(lines)


def write_crops(model: str, data: str, out_dir: str, size: int = 128) -> list[Path]:
    """Side-by-side centre crops (bicubic | ESPCN | ground truth) of Y, one PNG per image."""
    from PIL import Image

    up, scale = model_upscaler(model)
    bicubic = kernel_upscaler("bicubic", scale)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for p in load_pairs(data, scale):
        h, w = p.hr_y.shape
        s = min(size, h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        panels = [img[y0 : y0 + s, x0 : x0 + s] for img in (bicubic(p.lr_y), up(p.lr_y), p.hr_y)]
        gap = np.full((s, 4), 1.0, np.float32)
        row = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
        path = Path(out_dir) / f"{p.name}_x{scale}.png"
        Image.fromarray(np.clip(np.rint(row * 255), 0, 255).astype(np.uint8)).resize(
            (row.shape[1] * 2, s * 2), Image.Resampling.NEAREST).save(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="checkpoint (.pt) or exported .onnx; omit for baselines only")
    ap.add_argument("--data", required=True, help="folder of HR images")
    ap.add_argument("--scale", type=int, default=None)
    ap.add_argument("--znedi3", action="store_true", help="add znedi3 doubling (x2, needs vapoursynth-znedi3)")
    ap.add_argument("--crops", default="", help="write bicubic | ESPCN | GT crops as PNG into this folder")
    ap.add_argument("--json", default="", help="also write the table as JSON")
    ap.add_argument("--raw", action="store_true", help="add an espcn_noclamp row: the network without the output clamp")
    args = ap.parse_args(argv)
    if args.crops and not args.model:
        ap.error("--crops needs --model")
    table = evaluate(args.model or None, args.data, args.scale, args.znedi3, raw=args.raw)
    print(format_table(table))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    if args.crops and args.model:
        for path in write_crops(args.model, args.data, args.crops):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
