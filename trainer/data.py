"""Images -> luma -> (LR, HR) pairs, following the standard SR benchmark protocol.

Y convention (shared with the plugin through the ONNX metadata `y_convention = bt601-studio/255`):
BT.601 studio-swing luma as MATLAB's `rgb2ycbcr` computes it, `Y = 16 + 65.481 R + 128.553 G + 24.966 B`
with RGB in [0, 1], divided by 255 (so Y lies in [16/255, 235/255]).

LR images are made like MATLAB's `imresize(hr, 1/r, 'bicubic')`: an antialiased cubic (a = -0.5,
i.e. Catmull-Rom) downscale of the 8-bit RGB image, rounded back to 8 bits. Pillow's resampler is such a
filter (its support widens with the downscale factor) and reproduces the published bicubic figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
# How the network meets the picture's edge (ONNX metadata `border`, shared with the plugin): the LR plane is
# mirrored outward by the receptive radius, edge pixel repeated (numpy's "symmetric", zimg's mirror), so no
# counted output pixel is computed from the convolutions' zero padding. Measured on the shipped weights
# before any training with it: +0.03 dB on Set5 x2, +0.06 dB on the line-art hold-out over zero padding.
BORDER = "symmetric"
# What the plugin does to the network's output by default (ONNX metadata `clamp`): it is limited to the
# [min, max] of the LR plane it came from. The network rings past the picture's range at hard edges (white
# paper next to a line); on the line-art hold-out that costs 0.24 dB, on Set5/Set14 x2 0.004/0.012 dB.
CLAMP = "source-range"
FILTERS = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


def list_images(folder: str | Path) -> list[Path]:
    """All PNG/JPEG/BMP files under `folder`, recursively, in a stable order."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no PNG/JPEG/BMP images under {folder}")
    return paths


def is_grey(path: str | Path) -> bool:
    """True for single-channel images (Set14's `bridge`): their Y is the grey value itself."""
    return Image.open(path).mode in ("L", "I;16", "I", "F")


def load_rgb(path: str | Path) -> np.ndarray:
    """8-bit RGB (H, W, 3); alpha is flattened onto white, grey is replicated."""
    img = Image.open(path)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    return np.asarray(img.convert("RGB"))


def rgb_to_y(rgb: np.ndarray, grey: bool = False) -> np.ndarray:
    """Studio-swing BT.601 Y / 255 (float32) of 8-bit RGB (H, W, 3).

    A grey source keeps its full-range values as Y, as the benchmark code does for single-channel
    images (this is what makes Set14's published bicubic figure come out right).
    """
    if grey:
        return (rgb[..., 0].astype(np.float64) / 255.0).astype(np.float32)
    x = rgb.astype(np.float64) / 255.0
    y = 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]
    return (y / 255.0).astype(np.float32)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so both sides are multiples of `scale`."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def resize_float(plane: np.ndarray, width: int, height: int, kernel: str = "bicubic") -> np.ndarray:
    """Resize a float (H, W) plane with Pillow's antialiased `kernel` (no rounding)."""
    img = Image.fromarray(plane.astype(np.float32), mode="F")
    return np.asarray(img.resize((width, height), FILTERS[kernel]), dtype=np.float32)


def resize_rgb8(rgb: np.ndarray, width: int, height: int, kernel: str = "bicubic") -> np.ndarray:
    """Resize 8-bit RGB channel by channel in float and round back to 8 bits (MATLAB `imresize`)."""
    chans = [resize_float(rgb[..., c].astype(np.float32), width, height, kernel) for c in range(3)]
    return np.clip(np.rint(np.stack(chans, axis=-1)), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Pair:
    """One image of a set: HR luma, LR luma (8-bit Y of the rounded 8-bit LR RGB), and the LR RGB."""

    name: str
    hr_y: np.ndarray
    lr_y: np.ndarray
    lr_rgb: np.ndarray


def make_pair(path: str | Path, scale: int) -> Pair:
    """Mod-crop the HR image and make its LR counterpart by the benchmark protocol."""
    hr = modcrop(load_rgb(path), scale)
    h, w = hr.shape[:2]
    lr = resize_rgb8(hr, w // scale, h // scale)
    grey = is_grey(path)
    lr_y = (to_8bit(rgb_to_y(lr, grey)) / 255.0).astype(np.float32)  # 8-bit Y, as a video carries it
    return Pair(Path(path).stem, rgb_to_y(hr, grey), lr_y, lr)


def load_pairs(folder: str | Path, scale: int, names: list[Path] | None = None) -> list[Pair]:
    """Pairs for every image in `folder` (or for the given paths)."""
    return [make_pair(p, scale) for p in (list_images(folder) if names is None else names)]


def to_8bit(y: np.ndarray) -> np.ndarray:
    """Round a Y/255 plane to 8-bit codes (float64 for metrics)."""
    return np.clip(np.rint(y.astype(np.float64) * 255.0), 0, 255)


def mirror_index(start: int, length: int, size: int) -> np.ndarray:
    """Indices start .. start+length-1 folded into [0, size) by BORDER (valid for overhangs up to `size`)."""
    i = np.arange(start, start + length)
    i = np.where(i < 0, -i - 1, i)
    return np.where(i >= size, 2 * size - 1 - i, i)


def run_bordered(run: "Callable[[np.ndarray], np.ndarray]", lr_y: np.ndarray, radius: int, scale: int,
                 clamp: bool = True) -> np.ndarray:
    """`run` (an (H, W) -> (rH, rW) upscaler) on `lr_y` extended by BORDER, cropped back to (rH, rW), and
    with `clamp` limited to lr_y's [min, max] (CLAMP): the network as the plugin runs it by default."""
    k = radius * scale
    out = run(np.pad(lr_y, radius, mode=BORDER))[k:-k, k:-k] if radius > 0 else run(lr_y)
    return np.clip(out, lr_y.min(), lr_y.max()) if clamp else out


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Drop `border` pixels on every side (the protocol crops `scale` pixels)."""
    return img[border:-border, border:-border] if border else img


def _pool_weights(pools: "list[tuple[list[Pair], float]]") -> np.ndarray:
    """Drawing probability of each picture: by area within its pool, pools by their shares; the first
    pool (the main data) gets what the others leave. An empty pool's share goes to the rest."""
    full = [(pool, share) for pool, share in pools if pool]
    rest = 1.0 - sum(share for _, share in pools[1:])
    parts = []
    for i, (pool, share) in enumerate(full):
        area = np.array([p.lr_y.size for p in pool], dtype=np.float64)
        parts.append(area / area.sum() * (rest if pool is pools[0][0] else share))
    w = np.concatenate(parts)
    return w / w.sum()


class PatchSampler:
    """Random aligned (LR, HR) luma patches from a list of pairs, with flips/rotations.

    Pictures are drawn in proportion to their area, so every pixel is equally likely. `extra` pairs
    (training-only data: one list, or one list per folder) join them. `extra_share` fixes shares of the
    patches instead, so a large extra collection cannot crowd out the data the model is for: one value
    is the share of all extra data together; one value per folder is that folder's share (0: the folder
    joins the main data by area, which gets what the shares leave).

    Flips and 90-degree rotations commute with the centre-aligned symmetric downscale, so augmenting
    the LR and HR patch together gives a valid pair. The generator state is part of the checkpoint,
    which is what makes a resumed run repeat the uninterrupted one exactly.

    With `context` > 0 each LR window carries `context` extra pixels on every side that feed the network
    but not the loss (the weight is 0 there): real picture inside it, and beyond the picture's edge the
    BORDER extension the evaluation and the plugin feed. Without it, the outer ring of every patch is
    computed from the convolutions' zero padding, which the network never meets when it runs, and that
    ring is ~30% of a 48 px patch. Every picture pixel is counted equally often, edge pixels included, as
    the evaluation weighs them.
    """

    def __init__(self, pairs: list[Pair], scale: int, patch: int, augment: bool, seed: int,
                 context: int = 0, extra: "Sequence[Pair] | Sequence[Sequence[Pair]]" = (),
                 extra_share: float | Sequence[float] = 0.0) -> None:
        self.window = patch + 2 * context
        groups = [list(g) for g in extra] if extra and not isinstance(extra[0], Pair) else [list(extra)]
        shares = list(extra_share) if isinstance(extra_share, (list, tuple)) else [extra_share]
        if len(shares) != len(groups):  # one share (or none) for several folders: they are one group
            groups, shares = [[p for g in groups for p in g]], (shares or [0.0])[:1]
        usable = lambda group: [p for p in group if min(p.lr_y.shape) >= self.window]  # noqa: E731
        pools: list[tuple[list[Pair], float]] = [(usable(pairs), 0.0)]
        for group, share in zip(groups, shares):
            if share > 0:
                pools.append((usable(group), share))
            else:
                pools[0][0].extend(usable(group))
        self.pairs = [p for pool, _ in pools for p in pool]
        if not self.pairs:
            raise ValueError(f"no training image is at least {self.window * scale} px on its short side")
        self.weights = _pool_weights(pools)
        self.pool_of = np.concatenate([np.full(len(pool), i) for i, (pool, _) in enumerate(pools)]).astype(int)
        self.picture_weight = np.ones(len(self.pairs), np.float32)  # loss weight of each picture's pixels
        self.scale, self.patch, self.context, self.augment = scale, patch, context, augment
        self.rng = np.random.default_rng(seed)

    def weigh_pictures(self, mse: np.ndarray, floor: float) -> None:
        """Weight each picture's pixels by 1 / its MSE (floored), normalised to a mean of 1 within each pool.

        L2 with these weights follows the gradient of the mean over pictures of 10 log10(MSE), i.e. of the
        mean per-image PSNR the benchmarks report, at the MSEs given: a picture the network already gets
        nearly right is not traded away for a few per cent on a hard one. Pools keep their patch shares."""
        self.picture_mse = np.asarray(mse, np.float64)  # kept in the checkpoint: a resumed run weighs the same
        w = 1.0 / np.maximum(self.picture_mse, floor)
        for pool in np.unique(self.pool_of):
            at = self.pool_of == pool
            w[at] /= float((self.weights[at] * w[at]).sum() / self.weights[at].sum())
        self.picture_weight = w.astype(np.float32)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, 1, w, w) LR, (n, 1, rw, rw) HR float32 windows and the HR loss weight of each pixel (0 outside
        the counted patch, else its picture's weight: 1 unless `weigh_pictures` set it)."""
        w, r = self.window, self.scale
        lr = np.empty((n, 1, w, w), np.float32)
        hr = np.empty((n, 1, w * r, w * r), np.float32)
        weight = np.empty((n, 1, w * r, w * r), np.float32)
        for i, k in enumerate(self.rng.choice(len(self.pairs), size=n, p=self.weights)):
            pair = self.pairs[k]
            (y, ys), (x, xs) = (self._place(size) for size in pair.lr_y.shape)
            a, b = self._cut(pair, y, x)
            m = np.zeros((w, w), np.float32)
            m[ys, xs] = 1.0
            if self.augment:
                rot, flip = int(self.rng.integers(0, 4)), bool(self.rng.integers(0, 2))
                a, b, m = np.rot90(a, rot), np.rot90(b, rot), np.rot90(m, rot)
                if flip:
                    a, b, m = a[:, ::-1], b[:, ::-1], m[:, ::-1]
            lr[i, 0], hr[i, 0] = a, b
            weight[i, 0] = np.kron(m, np.full((r, r), self.picture_weight[k], np.float32))
        return lr, hr, weight

    def _cut(self, pair: Pair, y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
        """The LR window at (y, x) and its HR counterpart; parts beyond the picture come from BORDER."""
        w, r = self.window, self.scale
        (h, wd) = pair.lr_y.shape
        if 0 <= y <= h - w and 0 <= x <= wd - w:
            return pair.lr_y[y : y + w, x : x + w], pair.hr_y[y * r : (y + w) * r, x * r : (x + w) * r]
        a = pair.lr_y[np.ix_(mirror_index(y, w, h), mirror_index(x, w, wd))]
        b = pair.hr_y[np.ix_(mirror_index(y * r, w * r, h * r), mirror_index(x * r, w * r, wd * r))]
        return a, b  # the HR beyond the edge has weight 0: it only keeps the arrays whole

    def _place(self, size: int) -> tuple[int, slice]:
        """Start of a window along one axis of `size` LR pixels, and the slice of it the loss counts."""
        w, c = self.window, self.context
        if not c:
            return int(self.rng.integers(0, size - w + 1)), slice(0, w)
        # The counted block [u, u + patch) may overhang the picture, so each picture pixel is counted for
        # exactly `patch` of the equally likely starts u, edge pixels included. The window keeps `c` pixels
        # of context around the block, reaching at most `c` beyond the picture (the BORDER extension, as
        # the network meets it when it runs), so the context ring itself is never counted.
        u = int(self.rng.integers(1 - self.patch, size))
        start = min(max(u - c, -c), size + c - w)
        return start, slice(max(u, 0) - start, min(u + self.patch, size) - start)
