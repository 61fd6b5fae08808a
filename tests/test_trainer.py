"""Trainer: model shapes, shuffle layout, training, resume, NaN guard, export parity."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="trainer tests need torch (pip install .[train])")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from PIL import Image  # noqa: E402

from trainer import export as export_mod  # noqa: E402
from trainer import train as train_mod  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data import (BORDER, Pair, PatchSampler, load_pairs, mirror_index, resize_float,  # noqa: E402
                          rgb_to_y)
from trainer.model import ESPCN, ESPCNConfig, load_model, upscale_plane  # noqa: E402


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shapes_and_paper_cost(scale):
    net = ESPCN(ESPCNConfig(scale=scale))
    y = net(torch.zeros(2, 1, 11, 7))
    assert y.shape == (2, 1, 11 * scale, 7 * scale)
    n = sum(p.numel() for p in net.parameters())
    # conv 5x5x1x64 + 3x3x64x32 + 3x3x32xr^2, with biases: the paper's shape and cost
    assert n == (25 * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 * scale**2 + scale**2)
    assert net.cfg.radius == 4


def test_pixelshuffle_equals_onnx_depthtospace_crd():
    from onnx import TensorProto, helper

    x = np.random.default_rng(1).random((1, 9, 4, 5), dtype=np.float32)
    ref = torch.nn.PixelShuffle(3)(torch.from_numpy(x)).numpy()
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=3, mode="CRD")
    g = helper.make_graph([node], "d2s", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ref.shape)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    out = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(out, ref)


def test_y_convention_is_studio_swing():
    rgb = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)
    np.testing.assert_allclose(rgb_to_y(rgb)[0] * 255, [16.0, 235.0], atol=1e-4)


def test_patches_are_aligned_pairs(image_dir):
    pairs = load_pairs(image_dir, 2)
    sampler = PatchSampler(pairs, 2, 16, augment=True, seed=3)
    lr, hr, weight = sampler.batch(8)
    assert (weight == 1).all()  # without context every pixel of the patch counts, as before
    for a, b in zip(lr[:, 0], hr[:, 0]):
        down = resize_float(b, 16, 16)
        # away from the patch border, the LR patch is the downscaled HR patch (up to 8-bit rounding)
        assert np.abs(down[3:-3, 3:-3] - a[3:-3, 3:-3]).max() < 1.5 / 255


def _window_at(plane: np.ndarray, window: np.ndarray) -> tuple[int, int]:
    """Where an (unaugmented) window was cut from `plane` (the noisy test images make it unique)."""
    w = window.shape[0]
    hits = [(y, x) for y in range(plane.shape[0] - w + 1) for x in range(plane.shape[1] - w + 1)
            if np.array_equal(plane[y : y + w, x : x + w], window)]
    assert len(hits) == 1
    return hits[0]


def test_mirror_index_is_numpys_symmetric_pad():
    plane = np.arange(7 * 5).reshape(7, 5)
    padded = np.pad(plane, 4, mode=BORDER)
    for y0, x0 in [(-4, -4), (-2, 0), (0, -1), (2, -3)]:
        got = plane[np.ix_(mirror_index(y0, 9, 7), mirror_index(x0, 9, 5))]
        np.testing.assert_array_equal(got, padded[y0 + 4 : y0 + 13, x0 + 4 : x0 + 13])


def test_context_loss_pixels_are_what_the_whole_picture_gives(image_dir):
    """With context, every pixel the loss counts is what the network gives on the whole picture extended
    by BORDER (as eval and the plugin run it): none comes from the zero padding of the window's border,
    and beyond the picture's edge the window holds the same BORDER extension."""
    pair = load_pairs(image_dir, 2)[0]
    net = ESPCN(ESPCNConfig(scale=2)).eval()
    c = net.cfg.radius
    with torch.no_grad():
        whole = net(torch.from_numpy(np.pad(pair.lr_y, c, mode=BORDER))[None, None])[0, 0].numpy()
    bare = upscale_plane(net, pair.lr_y, clamp=False)
    np.testing.assert_allclose(whole[2 * c : -2 * c, 2 * c : -2 * c], bare, atol=1e-6)
    sampler = PatchSampler([pair], 2, 8, augment=False, seed=5, context=c)
    lr, hr, weight = sampler.batch(40)
    assert lr.shape[-1] == 16 and hr.shape[-1] == 32
    with torch.no_grad():
        part = net(torch.from_numpy(lr)).numpy()
    edges = 0
    for i in range(40):
        y, x = _window_at(np.pad(pair.lr_y, c, mode=BORDER), lr[i, 0])
        ref = whole[2 * y : 2 * y + 32, 2 * x : 2 * x + 32]
        counted = weight[i, 0] == 1
        np.testing.assert_allclose(part[i, 0][counted], ref[counted], atol=1e-6)
        assert 0 < counted.sum() <= 16 * 16  # at most the 8x8 LR patch counts, never the context ring
        assert not (counted[:8].any() or counted[-8:].any() or counted[:, :8].any() or counted[:, -8:].any())
        np.testing.assert_array_equal(hr[i, 0][counted], np.pad(pair.hr_y, 2 * c, mode=BORDER)[
            2 * y : 2 * y + 32, 2 * x : 2 * x + 32][counted])
        edges += bool(y == 0 or x == 0 or y == pair.lr_y.shape[0] + 2 * c - 16
                      or x == pair.lr_y.shape[1] + 2 * c - 16)
    assert 0 < edges < 40  # windows reaching beyond the picture are among them, but not all
    # and an inner window run alone is not the whole-picture answer on its outer ring (what the option fixes)
    with torch.no_grad():
        ring = net(torch.from_numpy(pair.lr_y[4:20, 4:20])[None, None]).numpy()[0, 0]
    assert np.abs(ring[:2] - whole[8 + 2 * c : 10 + 2 * c, 8 + 2 * c : 40 + 2 * c]).max() > 1e-4


def test_context_counts_every_picture_pixel_equally_often():
    """Edge pixels are counted as often as inner ones, as the evaluation weighs them."""
    h, w = 40, 44
    code = np.arange(h * w, dtype=np.float32).reshape(h, w)  # each LR value names its own position
    pair = Pair("coded", np.zeros((2 * h, 2 * w), np.float32), code, np.zeros((h, w, 3), np.uint8))
    sampler = PatchSampler([pair], 2, 8, augment=False, seed=1, context=4)
    cover = np.zeros(h * w)
    for _ in range(60):
        lr, _, weight = sampler.batch(100)
        for win, wt in zip(lr[:, 0], weight[:, 0]):
            np.add.at(cover, win[wt[::2, ::2] == 1].astype(int), 1)
    cover = cover.reshape(h, w)
    assert cover.min() > 0.7 * cover.mean() and cover.max() < 1.3 * cover.mean()
    ring = np.ones((h, w), bool)
    ring[4:-4, 4:-4] = False
    assert 0.9 < cover[ring].mean() / cover[~ring].mean() < 1.1


def _cfg(image_dir, tmp_path, **kw) -> TrainConfig:
    base = dict(scale=2, data=(str(image_dir),), val=str(image_dir), out=str(tmp_path / "run"), steps=8,
                batch=4, patch=12, warmup=2, eval_every=1000, ckpt_every=4, threads=1)
    return TrainConfig.from_dict({**base, **kw})


def test_extra_data_trains_but_never_validates(image_dir, tmp_path):
    """Extra folders join training only; a re-encoded copy of a hold-out image is dropped, others kept.

    The split itself never reads them, so a released model is measured without them (CI has none).
    """
    cfg = _cfg(image_dir, tmp_path, holdout=2)
    _, held = train_mod.split_data(cfg)
    extra = tmp_path / "extra"
    (extra / "sub").mkdir(parents=True)
    Image.open(held[0]).save(extra / "sub" / "copy_of_held.bmp")  # same pixels, other name and format
    kept = sorted(p for p in image_dir.glob("*.png") if p not in held)[0]
    Image.open(kept).save(extra / "copy_of_train.png")
    Image.fromarray(np.full((40, 40, 3), 7, np.uint8)).save(extra / "new.png")
    assert train_mod.split_data(dataclasses.replace(cfg, extra=(str(tmp_path / "absent"),)))[1] == held
    with pytest.raises(SystemExit, match=r"extra folder .*runs/screentone not found \(make it with: python -m trainer.screentone"):
        train_mod.extra_images((str(tmp_path / "runs" / "screentone"),), held)
    added = train_mod.extra_images((str(extra),), held)
    assert sorted(p.name for p in added) == ["copy_of_train.png", "new.png"]
    run = train_mod.train(dataclasses.replace(cfg, extra=(str(extra),), steps=2))
    assert run.is_file()


def test_extra_share_sets_the_patch_mix(image_dir):
    """By default every pixel is equally likely; `extra_share` fixes the extra group's share of patches."""
    pairs = load_pairs(image_dir, 2)
    main, extra = pairs[:2], pairs[2:] * 5  # the extra group has 10x the main group's area
    by_area = PatchSampler(main, 2, 12, augment=False, seed=0, extra=extra)
    assert by_area.weights[2:].sum() == pytest.approx(10 / 11)
    mixed = PatchSampler(main, 2, 12, augment=False, seed=0, extra=extra, extra_share=0.25)
    assert mixed.weights[2:].sum() == pytest.approx(0.25)
    # one share per folder: folder 1 gets 30%; folder 2 (share 0) joins the main data by area
    per = PatchSampler(main, 2, 12, augment=False, seed=0, extra=[pairs[2:4], pairs[4:] * 3], extra_share=(0.3, 0.0))
    area = np.array([p.lr_y.size for p in per.pairs], np.float64)
    assert [p.name for p in per.pairs] == [p.name for p in main + pairs[4:] * 3 + pairs[2:4]]
    assert per.weights[-2:].sum() == pytest.approx(0.3)
    assert per.weights[:8] == pytest.approx(0.7 * area[:8] / area[:8].sum())
    with pytest.raises(ValueError, match="extra_share"):
        TrainConfig(extra_share=(1.0,))
    with pytest.raises(ValueError, match="2 values for 3 extra folders"):
        TrainConfig(extra=("a", "b", "c"), extra_share=(0.1, 0.2))
    assert TrainConfig.from_dict({"extra": ["a", "b"], "extra_share": ["0.25", "0"]}).extra_share == (0.25, 0.0)


def test_training_reduces_loss(image_dir, tmp_path):
    cfg = _cfg(image_dir, tmp_path, steps=120, ckpt_every=60, eval_every=120, lr=3e-3)
    train_mod.train(cfg)
    hist = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["history"]
    losses = [v for _, v in hist["loss"]]
    assert losses[-1] < 0.5 * losses[0]
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000


def test_logmse_is_minus_the_mean_patch_psnr():
    hr = torch.zeros(2, 1, 4, 4)
    sr = hr.clone()
    sr[0] += 0.1                                   # MSE 1e-2: 20 dB
    sr[1] += 0.01                                  # MSE 1e-4: 40 dB ...
    sr[1, :, 0] = 5.0                              # ... outside a masked-out row
    weight = torch.ones_like(hr)
    weight[1, :, 0] = 0.0
    floor = train_mod.LOGMSE_FLOOR
    want = (10 * np.log10(1e-2 + floor) + 10 * np.log10(1e-4 + floor)) / 2
    assert float(train_mod.loss_fn("logmse", sr, hr, weight)) == pytest.approx(want, abs=1e-4)
    # Each patch counts by its PSNR: the same error added to the clean patch costs it far more.
    worse_clean, worse_busy = sr.clone(), sr.clone()
    worse_clean[1, :, 1:] += 0.01
    worse_busy[0] += 0.01
    base = float(train_mod.loss_fn("logmse", sr, hr, weight))
    assert float(train_mod.loss_fn("logmse", worse_clean, hr, weight)) - base > \
        5 * (float(train_mod.loss_fn("logmse", worse_busy, hr, weight)) - base)


def test_logmse_training_raises_patch_psnr(image_dir, tmp_path):
    cfg = _cfg(image_dir, tmp_path, steps=120, ckpt_every=60, eval_every=120, lr=3e-3, loss="logmse")
    train_mod.train(cfg)
    losses = [v for _, v in torch.load(tmp_path / "run" / "last.pt", weights_only=False)["history"]["loss"]]
    assert losses[-1] < losses[0] - 3.0            # 3 dB better patches


@pytest.mark.parametrize("context,loss", [(False, "l1"), (True, "l1"), (True, "picture_db")])
def test_resume_repeats_uninterrupted_run(image_dir, tmp_path, monkeypatch, context, loss):
    whole = train_mod.train(_cfg(image_dir, tmp_path / "a", context=context, loss=loss))
    calls = {"n": 0}

    def crash_after_first_checkpoint(history, path):
        calls["n"] += 1
        raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(train_mod, "plot", crash_after_first_checkpoint)
    cfg_b = _cfg(image_dir, tmp_path / "b", context=context, loss=loss)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg_b)
    assert torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=False)["step"] == 4
    monkeypatch.undo()
    resumed = train_mod.train(cfg_b, resume=True)
    a = torch.load(whole, weights_only=False)
    b = torch.load(resumed, weights_only=False)
    assert a["step"] == b["step"] == 8 and a["config"]["context"] is b["config"]["context"] is context
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)


def test_nan_loss_stops_without_saving(image_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "loss_fn", lambda kind, sr, hr, *rest: (sr - hr).mean() * float("nan"))
    with pytest.raises(SystemExit, match="loss is nan"):
        train_mod.train(_cfg(image_dir, tmp_path))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_export_parity_metadata_and_refusal(image_dir, tmp_path, monkeypatch):
    ckpt = train_mod.train(_cfg(image_dir, tmp_path, scale=3, steps=4))
    out = export_mod.export(str(ckpt), str(tmp_path / "m.onnx"), {"Set5": {"psnr": 1.0}})
    model = onnx.load(out)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["scale"] == "3" and json.loads(meta["arch"])["kernels"] == [5, 3, 3]
    assert meta["y_convention"] == "bt601-studio/255" and meta["border"] == BORDER == "symmetric"
    assert json.loads(meta["training"])["border"] == BORDER  # the run's patches met the mirrored edge
    x = np.random.default_rng(0).random((1, 1, 21, 17), dtype=np.float32)
    ref = load_model(str(ckpt))(torch.from_numpy(x)).detach().numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    monkeypatch.setattr(export_mod, "parity_error", lambda net, model: 1.0)
    with pytest.raises(SystemExit, match="refusing"):
        export_mod.export(str(ckpt), str(tmp_path / "bad.onnx"))
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.parametrize("clamp", [True, False])
def test_eval_runs_the_model_as_the_plugin_does(image_dir, tmp_path, clamp):
    """What the trainer measures is what `espcn.Upscale` gives: same border, same output clamp, same values."""
    vs = pytest.importorskip("vapoursynth")
    from trainer.eval import model_upscaler
    from vs_espcn import graph

    out = export_mod.export(str(train_mod.train(_cfg(image_dir, tmp_path, steps=4))), str(tmp_path / "m.onnx"))
    model = onnx.load(out)  # triple the last layer, so the output overshoots and the clamp has work to do
    for init in model.graph.initializer:
        if init.name.startswith("conv2."):
            init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * 3, init.name))
    onnx.save(model, out)
    lr = load_pairs(image_dir, 2)[0].lr_y
    blank = vs.core.std.BlankClip(format=vs.GRAYS, width=lr.shape[1], height=lr.shape[0], length=1)
    frame = blank.get_frame(0).copy()
    np.asarray(frame[0])[:] = lr
    clip = blank.std.ModifyFrame(blank, lambda n, f: frame)
    plugin = np.asarray(graph.upscale(clip, model=str(out), backend="ort", clamp=clamp).get_frame(0)[0])
    np.testing.assert_allclose(plugin, model_upscaler(str(out), clamp=clamp)[0](lr), atol=5e-6)
    inside = plugin.min() >= lr.min() and plugin.max() <= lr.max()
    assert inside == clamp  # clamped output stays in the source range; the raw output leaves it


def test_remeasure_rewrites_numbers_not_weights(image_dir, tmp_path):
    """`release --remeasure` measures an exported file again on its run's own sets (here a hold-out split)
    and rewrites its metrics and card; the graph and weights stay byte for byte."""
    from trainer import release
    from trainer.eval import evaluate

    cfg = _cfg(image_dir, tmp_path, holdout=2, steps=4)
    out = export_mod.export(str(train_mod.train(cfg)), str(tmp_path / "models" / "m.onnx"), {"holdout": {}})
    graph = onnx.load(out).graph.SerializeToString()
    assert release.main(["--remeasure", str(out)]) == 0
    meta = export_mod.read_metadata(out)
    want = evaluate(str(out), train_mod.split_data(cfg)[1], 2)["espcn"]["mean"]
    assert json.loads(meta["metrics"])["holdout"]["espcn"] == [round(v, 4) for v in want]
    assert meta["border"] == BORDER and "--remeasure" in meta["measured"] and meta["scale"] == "2"
    assert meta["clamp"] == "source-range" and "espcn_noclamp" in json.loads(meta["metrics"])["holdout"]
    assert onnx.load(out).graph.SerializeToString() == graph
    assert "measured again by `python -m trainer.release --remeasure" in (out.parent / "MODEL_CARD.md").read_text()


def test_cli_overrides_preset_with_types():
    cfg, resume = TrainConfig.from_args(["--preset", "x3", "--steps", "12", "--lr", "2e-3", "--augment", "false",
                                         "--data", "a", "b", "--resume"])
    assert (cfg.scale, cfg.steps, cfg.lr, cfg.augment, cfg.data, resume) == (3, 12, 2e-3, False, ("a", "b"), True)
    assert cfg.channels == (64, 32)


def test_eval_table_and_crops(image_dir, tmp_path):
    from trainer.eval import evaluate, write_crops

    ckpt = train_mod.train(_cfg(image_dir, tmp_path, steps=4))
    onnx_path = export_mod.export(str(ckpt), str(tmp_path / "m.onnx"))
    by_ckpt = evaluate(str(ckpt), str(image_dir), 2)
    by_onnx = evaluate(str(onnx_path), str(image_dir), 2)
    assert set(by_ckpt) == {"bicubic", "lanczos", "espcn"} and "mean" in by_ckpt["espcn"]
    assert abs(by_ckpt["espcn"]["mean"][0] - by_onnx["espcn"]["mean"][0]) < 1e-3
    crops = write_crops(str(onnx_path), str(image_dir), str(tmp_path / "crops"), size=32)
    assert len(crops) == 6
    assert Image.open(crops[0]).size == ((3 * 32 + 8) * 2, 32 * 2)


@pytest.mark.parametrize("activation", ["tanh", "prelu"])
def test_init_from_onnx_restores_the_exported_weights(image_dir, tmp_path, activation):
    """A fresh checkout keeps only the ONNX files; seeding a run from one must restore the net exactly."""
    ckpt = train_mod.train(_cfg(image_dir, tmp_path, steps=4, activation=activation))
    onnx_path = export_mod.export(str(ckpt), str(tmp_path / "m.onnx"))
    fresh = ESPCN(ESPCNConfig(activation=activation))
    train_mod.init_from(fresh, str(onnx_path))
    trained = load_model(str(ckpt))
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, rtol=0, atol=0)


def test_init_from_shipped_onnx_matches_its_output():
    path = str(Path(__file__).parents[1] / "vs_espcn" / "models" / "espcn_x3.onnx")
    net = ESPCN(ESPCNConfig(scale=3))
    train_mod.init_from(net, path)
    x = np.random.default_rng(1).random((1, 1, 13, 9), dtype=np.float32)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
    np.testing.assert_allclose(net.eval()(torch.from_numpy(x)).detach().numpy(), ref, atol=1e-5)


def test_init_from_rejects_a_foreign_onnx(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match="not a vs-espcn trainer export"):
        train_mod.init_from(ESPCN(ESPCNConfig()), str(tmp_path / "foreign.onnx"))


def test_continued_run_keeps_its_lineage_in_the_card(image_dir, tmp_path):
    from trainer.card import describe

    first = export_mod.export(str(train_mod.train(_cfg(image_dir, tmp_path / "a", steps=4))),
                              str(tmp_path / "a.onnx"))
    cfg = _cfg(image_dir, tmp_path / "b", steps=6, init_from=str(first), extra=(str(image_dir),))
    cont = train_mod.train(cfg, command="python -m trainer.train --init_from a.onnx")
    card = describe(export_mod.export(str(cont), str(tmp_path / "models" / "b.onnx")))
    assert "continued from the weights of this earlier run" in card
    assert "`python -m trainer.train --init_from a.onnx`" in card
    assert "- steps: 6;" in card and "  - steps: 4;" in card and "- in all: 10 steps" in card
    assert f"training only: {image_dir}" in card and card.count("training only") == 1


def test_validation_during_training_reports_what_eval_reports(image_dir, tmp_path):
    from trainer.eval import evaluate

    ckpt = train_mod.train(_cfg(image_dir, tmp_path, steps=4))
    got = train_mod.validate(load_model(str(ckpt)), load_pairs(image_dir, 2), 2)
    want = evaluate(str(ckpt), str(image_dir), 2)["espcn"]["mean"]
    assert got == pytest.approx(tuple(want), abs=1e-9)


def test_release_writes_the_card_beside_its_models(image_dir, tmp_path, monkeypatch):
    from trainer import release

    ckpt = train_mod.train(_cfg(image_dir, tmp_path, steps=4))
    monkeypatch.setattr(release, "measure", lambda ckpt, cfg, *also: {"Set5": {"espcn": [30.0, 0.9]}})
    monkeypatch.chdir(tmp_path)  # a default pointing at vs_espcn/models would write here
    assert release.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "trial" / "espcn_x2.onnx")]) == 0
    card = (tmp_path / "trial" / "MODEL_CARD.md").read_text()
    assert "## espcn_x2.onnx" in card and "| Set5 | espcn | 30.00 | 0.9000 |" in card
    assert not (tmp_path / "vs_espcn").exists()


def test_card_cli_rewrites_the_card_of_a_folder(image_dir, tmp_path, capsys):
    from trainer import card

    export_mod.export(str(train_mod.train(_cfg(image_dir, tmp_path / "run", steps=2))),
                      str(tmp_path / "models" / "espcn_x2.onnx"), {"Set5": {"espcn": [31.5, 0.9]}})
    assert card.main([str(tmp_path / "models")]) == 0
    assert "| `espcn_x2.onnx` | `\"\" (scale=2)` | Set5 | **31.50** |" in capsys.readouterr().out
    assert not (tmp_path / "models" / "MODEL_CARD.md").exists()
    assert card.main([str(tmp_path / "models"), "--write"]) == 0
    assert (tmp_path / "models" / "MODEL_CARD.md").read_text() == card.render_card(tmp_path / "models")
    with pytest.raises(SystemExit):
        card.main([str(tmp_path / "empty")])


def test_picture_db_weighs_each_picture_by_its_own_db(image_dir, tmp_path):
    """Weights are 1/MSE normalised per pool; a picture-dB run resumes as it runs; pools keep their shares."""
    pairs = load_pairs(image_dir, 2)
    s = PatchSampler(pairs[:4], 2, 12, augment=False, seed=0, extra=[pairs[4:]], extra_share=(0.4,))
    s.weigh_pictures(np.array([1e-3, 1e-4, 1e-4, 1e-2, 1e-3, 4e-3]), floor=4e-6)
    w = s.picture_weight
    assert w[1] == pytest.approx(10 * w[0]) and w[3] == pytest.approx(w[0] / 10) and w[4] == pytest.approx(4 * w[5])
    for pool in (0, 1):
        at = s.pool_of == pool
        assert float((s.weights[at] * w[at]).sum() / s.weights[at].sum()) == pytest.approx(1.0)
    _, _, m = s.batch(16)
    assert set(np.unique(m)) <= {0.0, *map(float, w)}
    whole = train_mod.train(_cfg(image_dir, tmp_path / "a", loss="picture_db", init_from=""))
    ckpt = torch.load(whole, weights_only=False)
    assert len(ckpt["picture_mse"]) == 6 and min(ckpt["picture_mse"]) > 0
