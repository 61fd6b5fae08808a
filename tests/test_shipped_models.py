"""The shipped ONNX files load, declare their scale, and still measure what their model card states."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage", reason="SSIM needs scikit-image (pip install .[train])")

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "vs_espcn" / "models"
SHARED = REPO.parent / "shared" / "data"
SHIPPED = {"espcn_x2.onnx": 2, "espcn_x3.onnx": 3, "espcn_x4.onnx": 4, "espcn_x2_anime.onnx": 2,
           "espcn_x2_manga.onnx": 2,
           # the int8 twins (QDQ, precision="int8"): measured through ONNX Runtime like the rest
           "espcn_x2_int8.onnx": 2, "espcn_x3_int8.onnx": 3, "espcn_x4_int8.onnx": 4, "espcn_x2_anime_int8.onnx": 2,
           "espcn_x2_manga_int8.onnx": 2}


def _meta(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


@pytest.mark.parametrize("name,scale", SHIPPED.items())
def test_shipped_model_declares_scale(name, scale):
    path = MODELS / name
    assert path.is_file(), f"{name} is not shipped"
    meta = _meta(path)
    assert int(meta["scale"]) == scale
    arch = json.loads(meta["arch"])
    # the paper's shape and cost: conv 5x5/64, 3x3/32, 3x3/r^2 with tanh
    assert (arch["kernels"], arch["channels"], arch["activation"]) == ([5, 3, 3], [64, 32], "tanh")
    assert meta["y_convention"] == "bt601-studio/255"
    assert path.stat().st_size < 200_000
    assert arch.get("quant", []) == ([1] if name.endswith("_int8.onnx") else [])
    assert f"## {name}" in (MODELS / "MODEL_CARD.md").read_text()


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"evaluation images not found at {SHARED}")
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reproduces_its_card(name, monkeypatch):
    from trainer.config import TrainConfig
    from trainer.eval import evaluate
    from trainer.release import eval_sets

    monkeypatch.chdir(REPO)  # training configs name the data relative to the repository
    meta = _meta(MODELS / name)
    cfg = TrainConfig.from_dict(json.loads(meta["training"])["config"])
    stated = json.loads(meta["metrics"])
    for set_name, data in eval_sets(cfg, json.loads(meta.get("extra_sets", "[]"))).items():
        table = evaluate(str(MODELS / name), data, cfg.scale, raw=True)
        for row in ("espcn", "espcn_noclamp"):  # the plugin's default output, and the network alone
            assert abs(table[row]["mean"][0] - stated[set_name][row][0]) < 0.02, row
        assert table["espcn"]["mean"][0] > table["bicubic"]["mean"][0] + 0.5


def test_model_card_matches_the_shipped_files():
    """The card is rendered from the files' metadata: a file replaced without `--write` fails here."""
    pytest.importorskip("torch", reason="trainer.card needs the train extra (pip install .[train])")
    from trainer.card import render_card

    assert (MODELS / "MODEL_CARD.md").read_text() == render_card(MODELS), \
        "MODEL_CARD.md is stale: run python -m trainer.card vs_espcn/models --write"
