"""Synthetic screentone pages: the grey they replace, a real screen, seeded, and never from a hold-out."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("scipy", reason="screentone needs scipy (pip install .[train])")
pytest.importorskip("torch", reason="trainer tests need torch (pip install .[train])")

from trainer import screentone  # noqa: E402


def _picture(grey: float) -> np.ndarray:
    """Paper (235/255) with a black-outlined flat square of `grey`."""
    y = np.full((160, 200), 235 / 255, np.float32)
    y[30:130, 40:160] = 16 / 255
    y[34:126, 44:156] = grey
    return y


@pytest.mark.parametrize("grey", [0.3, 0.55, 0.8])
def test_tone_keeps_the_mean_grey_and_prints_with_ink_and_paper(grey):
    y = _picture(grey)
    page, share = screentone.tone_page(y, np.random.default_rng(1))
    inner = page[40:120, 50:150]
    assert share > 0.2 and abs(float(inner.mean()) - grey) < 0.01
    assert inner.min() >= 16 / 255 - 1e-6 and inner.max() <= 235 / 255 + 1e-6  # printed with the page's ink and paper
    assert (np.abs(inner - 16 / 255) < 0.02).mean() > 0.01 and (np.abs(inner - 235 / 255) < 0.02).mean() > 0.01
    assert np.array_equal(page[:30], y[:30]) and np.array_equal(page[30:34, 40:160], y[30:34, 40:160])


def test_screen_has_its_pitch():
    """A 0-degree line screen of pitch 5 repeats every 5 pixels (its spectrum peaks there)."""
    t = screentone.Screen("lines", 5.0, 0.0).threshold((4 * 8, 4 * 200))
    row = t[0].reshape(200, 4).mean(1) - t[0].mean()
    assert int(np.argmax(np.abs(np.fft.rfft(row))[1:])) + 1 == 200 // 5


def test_pages_are_seeded_and_never_from_a_hold_out(tmp_path):
    src = tmp_path / "art"
    src.mkdir()
    for i in range(4):
        Image.fromarray(np.rint(_picture(0.3 + 0.1 * i) * 255).astype(np.uint8), "L").save(src / f"p{i}.png")
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps({"data": [str(src)], "holdout": 1}))
    for out in ("a", "b"):
        assert screentone.main(["--out", str(tmp_path / out), "--preset", str(preset)]) == 0
    from trainer.config import TrainConfig
    from trainer.train import split_data

    held = split_data(TrainConfig.from_dict(json.loads(preset.read_text())))[1]
    made = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(made) == 3 and all(held[0].stem not in name for name in made)
    for name in made:
        assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / name)), np.asarray(Image.open(tmp_path / "b" / name)))
