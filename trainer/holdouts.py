"""Named test sets carved out of training folders: seeded, spread over every title, never trained on.

The line-art model's first hold-out is a seeded share of `lineart/` (`TrainConfig.holdout`; named here
`lineart` too, so a model trained on other data is measured on it). Manga came later, in a folder of its
own (`lineart_extra/manga`, one sub-folder per title or chapter), and gets a second hold-out here, so
adding manga to training cannot change the first split. Every file of every named
hold-out is kept out of training whatever the run's config says (`held_out_paths`); a run lists in
`TrainConfig.holdout_sets` the ones it is also measured on.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .data import list_images

MANGA = Path("../shared/data/lineart_extra/manga")  # relative to the repository root, like the presets
LINEART = Path("../shared/data/lineart")
SHARE = 0.25  # of each sub-folder, rounded up: 3 + 1 + 4 = 8 of the 29 pages, both titles
SEED = 0
LINEART_COUNT = 16  # the anime preset's `holdout`: the same seeded draw as `train.split_data` makes


def split_by_folder(root: Path, share: float = SHARE, seed: int = SEED) -> list[Path]:
    """A seeded `share` (rounded up) of the images of each sub-folder of `root` (each title kept in it).

    Sub-folders are visited in name order and each draws from its own generator seeded by (seed, name),
    so adding a title never changes the pages held out of another."""
    held: list[Path] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        pages = list_images(folder)
        rng = np.random.default_rng([seed, *folder.name.encode()])
        pick = rng.permutation(len(pages))[: math.ceil(share * len(pages))]
        held += [pages[i] for i in sorted(pick)]
    return held


def seeded_draw(root: Path, count: int = LINEART_COUNT, seed: int = SEED) -> list[Path]:
    """`count` images of `root` drawn as `TrainConfig.holdout` draws them (the anime preset's hold-out)."""
    paths = list_images(root)
    held = {int(i) for i in np.random.default_rng(seed).permutation(len(paths))[:count]}
    return [p for i, p in enumerate(paths) if i in held]


HOLDOUTS = {"manga": (MANGA, split_by_folder), "lineart": (LINEART, seeded_draw)}


def holdout(name: str) -> list[Path]:
    """The images of the named hold-out (an error naming the set and its folder when that is absent)."""
    if name not in HOLDOUTS:
        raise ValueError(f"unknown hold-out {name!r}; known: {', '.join(sorted(HOLDOUTS))}")
    root, draw = HOLDOUTS[name]
    if not root.is_dir():
        raise FileNotFoundError(f"hold-out {name!r} needs {root.resolve()} (run from the repository root)")
    return draw(root)


def held_out_paths() -> set[Path]:
    """Resolved paths of every named hold-out whose folder exists: never to be trained on."""
    return {p.resolve() for name, (root, _) in HOLDOUTS.items() if root.is_dir() for p in holdout(name)}
