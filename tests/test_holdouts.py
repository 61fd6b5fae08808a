"""The round-2 data: new folders load as the protocol wants, and the manga hold-out is seeded and never trained."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer import holdouts
from trainer.config import TrainConfig, load_preset
from trainer.data import list_images, load_rgb, make_pair

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
NEW_PHOTOS = ["BSDS500_test", "DIV2K_gray_igv", "wiki_photos_y", "unsplash_y"]
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"training data not found at {SHARED}")


def _page(path: Path, value: int, size: tuple[int, int] = (40, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, np.uint8), "L").save(path)


def test_split_by_folder_is_seeded_per_title(tmp_path):
    """A quarter of each title (rounded up) is held out, the same every time; a new title changes no other."""
    for i in range(12):
        _page(tmp_path / "a_title" / f"p{i:02d}.png", i)
    for i in range(2):
        _page(tmp_path / "b_title" / f"p{i}.png", 100 + i)
    held = holdouts.split_by_folder(tmp_path)
    assert [p.parent.name for p in held].count("a_title") == 3 and [p.parent.name for p in held].count("b_title") == 1
    assert held == holdouts.split_by_folder(tmp_path)
    assert held != holdouts.split_by_folder(tmp_path, seed=1)
    for i in range(5):
        _page(tmp_path / "c_title" / f"p{i}.png", 200 + i)
    again = holdouts.split_by_folder(tmp_path)
    assert [p for p in again if p.parent.name != "c_title"] == held


def test_unknown_hold_out_is_a_config_error():
    with pytest.raises(ValueError, match="unknown holdout_sets"):
        TrainConfig(holdout_sets=("manga", "nope"))


@needs_shared
def test_manga_hold_out_has_both_titles_and_is_never_trained(monkeypatch):
    """At least 6 real pages of both titles; the anime preset trains on lineart_extra without any of them."""
    from trainer.train import extra_images, split_data

    monkeypatch.chdir(REPO)
    held = holdouts.holdout("manga")
    titles = {p.parent.name.split("_")[0] for p in held}
    assert len(held) >= 6 and titles == {"black", "ubunchu"}
    assert held == holdouts.holdout("manga")
    cfg = TrainConfig.from_dict(load_preset("anime"))
    assert "manga" in cfg.holdout_sets and any("lineart_extra" in e for e in cfg.extra)
    train, val = split_data(cfg)
    extra = extra_images(cfg.extra, val)
    resolved = {p.resolve() for p in held}
    assert not resolved & {p.resolve() for p in [*train, *extra]}
    manga_trained = [p for p in extra if "manga" in p.parts]
    assert len(manga_trained) == 29 - len(held)
    # a run that names the manga folder as its main data still never trains on the held-out pages
    as_data = dataclasses.replace(cfg, data=(str(holdouts.MANGA),), holdout=0, extra=())
    assert not resolved & {p.resolve() for p in split_data(as_data)[0]}


@needs_shared
@pytest.mark.parametrize("folder", NEW_PHOTOS)
def test_new_photo_folders_load_by_the_protocol(folder):
    """Grey files are used as Y unchanged; RGB files get BT.601 Y in the studio range.

    (Grey files are not all studio swing, whatever the data README says: DIV2K_gray_igv and the Black Jack
    pages span 0-255. As Y they are what Set14's grey `bridge` is: the values themselves.)"""
    first = list_images(SHARED / "train" / folder)[0]
    pair = make_pair(first, 2)
    img = Image.open(first)
    if img.mode == "L":
        raw = np.asarray(img)
        h, w = pair.hr_y.shape
        assert np.array_equal(np.rint(pair.hr_y * 255), raw[:h, :w])
    else:
        assert img.mode == "RGB"
        assert 16 / 255 - 1e-6 <= pair.hr_y.min() and pair.hr_y.max() <= 235 / 255 + 1e-6
    assert pair.lr_y.shape == (pair.hr_y.shape[0] // 2, pair.hr_y.shape[1] // 2)


def test_rgba_is_flattened_onto_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red-ish, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = load_rgb(tmp_path / "a.png")
    assert (rgb[:2] == [200, 0, 0]).all() and (rgb[2:] == 255).all()


@needs_shared
def test_named_lineart_hold_out_is_the_anime_presets_split(monkeypatch):
    """A model trained elsewhere (manga) is measured on exactly the line-art images the anime model held out."""
    from trainer.train import split_data

    monkeypatch.chdir(REPO)
    assert holdouts.holdout("lineart") == split_data(TrainConfig.from_dict(load_preset("anime")))[1]
    manga = TrainConfig.from_dict(load_preset("manga"))
    train, val = split_data(manga)
    assert val == holdouts.holdout("manga") and len(train) == 29 - len(val)


@needs_shared
def test_release_sets(monkeypatch):
    """Anime: its split, manga (its config), and nothing twice; manga: its two named sets; photo + `also`."""
    from trainer.release import eval_sets

    monkeypatch.chdir(REPO)
    anime = TrainConfig.from_dict(load_preset("anime"))
    assert list(eval_sets(anime, ["manga"])) == ["holdout", "manga"]
    assert list(eval_sets(TrainConfig.from_dict(load_preset("manga")))) == ["manga", "lineart"]
    old_anime = TrainConfig.from_dict({"data": ["../shared/data/lineart"], "holdout": 16})
    assert list(eval_sets(old_anime)) == ["holdout"] and list(eval_sets(old_anime, ["manga"])) == ["holdout", "manga"]
    assert list(eval_sets(TrainConfig(), ["manga"])) == ["Set5", "Set14", "manga"]
