"""Pure tile plan: split an (H, W) LR plane into equal-size windows with overlapping context.

The network never meets the picture's edge through its zero padding: the plane is first mirrored
outward by `pad` pixels (the receptive radius; numpy's "symmetric" mode, the `border` the trainer
measures and trains with), and windows are cut from that extended plane. Each tile has a *core*
(the LR pixels whose upscaled output it writes, in plane coordinates) and a *window* (the pixels of
the extended plane fed to the network) = core + `overlap` pixels of context on every side, as far as
the extended plane reaches. All windows of a plan have the same shape, so a static TensorRT engine
fits every call; the last row/column of windows is shifted inward instead of shrunk. With
`overlap >= pad >= receptive radius` each core's output equals the output of one run on the whole
extended plane.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

# Automatic tiles: the biggest window fed at once (LR pixels). ESPCN keeps ~100 float32
# activations per LR pixel (64 + 32 + r^2 channels): a whole 1080p plane peaks at ~1 GiB RSS in
# onnxruntime (measured), a whole 2160p plane at 3.9 GiB, so planes up to 1920x1088 run whole
# and bigger ones in strips of about that many pixels.
AUTO_PIXELS = 1920 * 1088


@dataclass(frozen=True)
class Span:
    """One tile along one axis: window [win, win + size) of the extended plane feeds core
    [core0, core1) of the plane (which sits at core0 + pad in the extended plane)."""

    win: int
    core0: int
    core1: int


@dataclass(frozen=True)
class Tile:
    """One 2-D tile: window origin (y, x) in LR pixels and its core rectangle."""

    y: Span
    x: Span


def plan_axis(length: int, tile: int, overlap: int, pad: int = 0) -> tuple[int, list[Span]]:
    """Split `length` into cores of at most `tile` pixels; return (window size, spans).

    Cores are near-equal (all `ceil(length / count)` but the last). Windows are core + 2*overlap, capped
    to the extended length `length + 2*pad` and clamped inside it, so every core keeps >= overlap pixels
    of context on each side, or all the extension there is at the plane's edge.
    """
    if length <= 0 or tile <= 0 or overlap < 0 or pad < 0:
        raise ValueError(f"bad tile axis: length={length} tile={tile} overlap={overlap} pad={pad}")
    count = math.ceil(length / tile)
    core = math.ceil(length / count)
    extended = length + 2 * pad
    window = min(extended, core + 2 * overlap)
    spans = []
    for i in range(count):
        c0, c1 = i * core, min((i + 1) * core, length)
        if c0 >= c1:
            break
        win = min(max(c0 + pad - overlap, 0), extended - window)
        spans.append(Span(win, c0, c1))
    return window, spans


def auto_tilesize(height: int, width: int, pixels: int = AUTO_PIXELS) -> tuple[int, int]:
    """Core size (h, w) for automatic tiling: the whole plane when it fits `pixels`, else
    full-width strips (or squares for very wide planes) of about `pixels` LR pixels."""
    if height * width <= pixels:
        return height, width
    if width <= pixels // 256:
        return max(1, pixels // width), width
    side = math.isqrt(pixels)
    return side, side


def plan(height: int, width: int, tile_h: int, tile_w: int, overlap: int, pad: int = 0
         ) -> tuple[tuple[int, int], list[Tile]]:
    """2-D plan: ((window_h, window_w), tiles in row-major order)."""
    wh, ys = plan_axis(height, tile_h, overlap, pad)
    ww, xs = plan_axis(width, tile_w, overlap, pad)
    return (wh, ww), [Tile(y, x) for y in ys for x in xs]


class Plan(NamedTuple):
    """The tiling of one plane, computed once per graph and shared by the backend (window
    shape) and the frame path (tiles). Index 2 is the window, as graph.tile_plan always returned."""

    core: tuple[int, int]  # requested core size (h, w), clipped to the plane
    overlap: int  # context pixels per side
    window: tuple[int, int]  # (h, w) fed to the backend on every call
    tiles: tuple[Tile, ...]
    pad: int = 0  # mirrored extension of the plane per side (the receptive radius)


def make_plan(height: int, width: int, core: tuple[int, int], overlap: int, pad: int = 0) -> Plan:
    """`plan` as a Plan, with the core clipped to the plane."""
    core = (min(core[0], height), min(core[1], width))
    window, tiles = plan(height, width, core[0], core[1], overlap, pad)
    return Plan(core, overlap, window, tuple(tiles), pad)
