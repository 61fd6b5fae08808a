"""`python -m trainer.screentone --out runs/screentone`: manga-like training pages from grey illustrations.

Manga prints grey as screentone: a screen of dots or lines whose ink coverage makes the grey. This lays
such screens (random pitch, angle and kind for each flat region) over the flat mid-tone regions of the
anime training pictures, as a tone artist would, and writes the pages as grey PNG files (Y as the
values, like the real pages) for `--extra`. The screen is drawn at 4x and box-filtered, so its edges are
those of a scanned print, not of aliased binary pixels. Only training pictures are used: the line-art
hold-out and every named hold-out (`trainer.holdouts`) are never sources, and the manga hold-out stays
real pages only.
"""
from __future__ import annotations

from ._deps import require

require(__name__)  # one sentence, not a traceback, when torch & co. are missing

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .data import is_grey, load_rgb, rgb_to_y

SUPERSAMPLE = 4


@dataclass(frozen=True)
class Screen:
    """One screentone sheet: `kind` "dots" or "lines", `pitch` in pixels, `angle` in degrees."""

    kind: str
    pitch: float
    angle: float

    def threshold(self, shape: tuple[int, int], y0: int = 0, x0: int = 0) -> np.ndarray:
        """Per-pixel threshold in [0, 1] of the sheet over `shape` (at the supersampled resolution); a
        pixel is ink where the coverage wanted exceeds it, so coverage c inks about c of the area."""
        s = SUPERSAMPLE
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        yy, xx = (yy + y0 * s + 0.5) / s, (xx + x0 * s + 0.5) / s
        a = np.deg2rad(self.angle)
        u = (xx * np.cos(a) + yy * np.sin(a)) * (2 * np.pi / self.pitch)
        v = (-xx * np.sin(a) + yy * np.cos(a)) * (2 * np.pi / self.pitch)
        if self.kind == "lines":
            return 0.5 - 0.5 * np.cos(u)
        return 0.5 - 0.25 * (np.cos(u) + np.cos(v))  # a dot per cell, growing into a chequer past 50%


def random_screen(rng: np.random.Generator) -> Screen:
    """Screens as manga uses them: mostly dots, 3-8 px pitch, the usual 45-degree and other angles."""
    kind = "lines" if rng.random() < 0.25 else "dots"
    angle = float(rng.choice([0.0, 15.0, 30.0, 45.0, 45.0, 60.0, 75.0]))
    return Screen(kind, float(rng.uniform(3.0, 8.0)), angle)


def flat_regions(y: np.ndarray, ink: float, paper: float, min_area: int = 400) -> tuple[np.ndarray, int]:
    """Labelled flat mid-tone regions of `y` (local spread under 3/255, clear of paper and ink), and
    their count; regions smaller than `min_area` pixels are dropped."""
    lo, hi = ndimage.minimum_filter(y, 7), ndimage.maximum_filter(y, 7)
    span = paper - ink
    mask = (hi - lo < 3 / 255) & (y > ink + 0.08 * span) & (y < paper - 0.06 * span)
    labels, n = ndimage.label(ndimage.binary_opening(mask, iterations=2))
    sizes = ndimage.sum(np.ones_like(y), labels, index=np.arange(1, n + 1))
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= min_area
    labels = np.where(keep[labels], labels, 0)
    return labels, int(keep.sum())


def tone_page(y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """`y` with every flat mid-tone region replaced by a random screen of the same mean grey; returns the
    page and the share of its pixels that were toned."""
    ink, paper = float(np.percentile(y, 0.5)), float(np.percentile(y, 99.5))
    if paper - ink < 0.3:  # no ink and paper to print with
        return y, 0.0
    labels, _ = flat_regions(y, ink, paper)
    out = y.copy()
    s = SUPERSAMPLE
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        region = labels[box] == i
        cover = np.clip((paper - float(np.median(y[box][region]))) / (paper - ink), 0.0, 1.0)
        h, w = region.shape
        t = random_screen(rng).threshold((h * s, w * s), box[0].start, box[1].start)
        level = np.quantile(t, cover)  # the sheet's threshold is not uniform: ink exactly `cover` of it
        inked = (t < level).reshape(h, s, w, s).mean(axis=(1, 3))  # box-filtered: a scanned print's edge
        out[box][region] = (paper - inked * (paper - ink))[region]
    return out, float((labels > 0).mean())


def source_luma(path: Path) -> np.ndarray:
    """Y of a source picture as the trainer reads it (grey files: the values themselves)."""
    return rgb_to_y(load_rgb(path), is_grey(path))


def main(argv: list[str] | None = None) -> int:
    from .config import TrainConfig, load_preset
    from .train import extra_images, split_data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the toned pages (grey PNG)")
    ap.add_argument("--preset", default="anime", help="training run whose pictures are the sources")
    ap.add_argument("--min_toned", type=float, default=0.05, help="skip pages with less of their area toned")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cfg = TrainConfig.from_dict(load_preset(args.preset))
    train, val = split_data(cfg)
    illustrations = [p for p in extra_images(cfg.extra, val) if "manga" not in p.parts]  # not real tone again
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    written = 0
    for path in [*train, *illustrations]:
        page, share = tone_page(source_luma(path), rng)
        if share < args.min_toned:
            continue
        Image.fromarray(np.clip(np.rint(page * 255), 0, 255).astype(np.uint8), "L").save(
            out / f"tone_{path.parent.name}_{path.stem}.png")
        written += 1
    print(f"wrote {written} toned pages to {out} (from {len(train) + len(illustrations)} sources)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
