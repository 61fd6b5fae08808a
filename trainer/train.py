"""The training loop: `python -m trainer.train --scale 2 --data ../shared/data/train [--preset x2] [--resume]`.

One checkpoint dict (model, optimizer, step, config, arch, sampler RNG, history) written atomically to
`<out>/last.pt`, so a run killed at any moment resumes with `--resume` and repeats the uninterrupted run.
"""
from __future__ import annotations

from ._deps import require

require(__name__)  # one sentence, not a traceback, when torch & co. are missing

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .config import CALIBRATION_PICTURES, TrainConfig
from .data import BORDER, Pair, PatchSampler, list_images, load_pairs, load_rgb
from .distributed import close, init_world, wrap
from .eval import score
from .holdouts import held_out_paths, holdout
from .model import ESPCN, ESPCNConfig, calibrate_ranges, state_from_onnx, upscale_plane
from .quant import reset_ranges


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay from `lr` to `lr_min` (a pure function of the step)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1.0 + math.cos(math.pi * t))


LOGMSE_FLOOR = 4e-6  # ~54 dB: below it a patch's error is under the 8-bit rounding the measure applies


def loss_fn(kind: str, sr: torch.Tensor, hr: torch.Tensor, weight: torch.Tensor,
            denom: float | None = None) -> torch.Tensor:
    """Loss on Y over the pixels whose `weight` is 1: l1, l2 or charbonnier per pixel, or logmse per patch.

    The sum is divided by `denom`, by default this batch's own normaliser (its weight sum, or its patch
    count for logmse); a process holding one slice of a global batch passes the global one (`normaliser`).

    `logmse` is 10 log10 of each patch's MSE, averaged over the batch: minus the mean patch PSNR. A mean of
    per-image PSNR weighs a small error on a flat picture as much as a large one on a busy picture, which
    a plain L2 over all pixels does not; this loss weighs patches the way that measure does.
    """
    err = sr - hr
    if kind == "picture_db":  # l2; the picture weights are in `weight` (PatchSampler.weigh_pictures)
        kind = "l2"
    if kind == "logmse":
        mse = (err**2 * weight).sum((1, 2, 3)) / weight.sum((1, 2, 3)).clamp_min(1.0)
        per_patch = 10.0 * torch.log10(mse + LOGMSE_FLOOR)
        return per_patch.sum() / (len(per_patch) if denom is None else denom)
    if kind == "l1":
        per_pixel = err.abs()
    elif kind == "l2":
        per_pixel = err**2
    elif kind == "charbonnier":
        per_pixel = torch.sqrt(err**2 + 1e-6)
    else:
        raise ValueError(f"unknown loss {kind!r}")
    return (per_pixel * weight).sum() / (weight.sum() if denom is None else denom)


def normaliser(kind: str, weight: np.ndarray) -> float:
    """What `loss_fn` divides a whole batch's sum by: its patch count (logmse) or its weight sum."""
    return float(len(weight)) if kind == "logmse" else float(weight.sum(dtype=np.float64))


def split_data(cfg: TrainConfig) -> tuple[list[Path], list[Path]]:
    """Training images, and validation images (a seeded hold-out of the data when `holdout` > 0).

    `extra` folders are not read here: they do not change the split, and measuring a released model
    must not need them (`train` adds them with `extra_images`). Images of a named hold-out
    (`trainer.holdouts`) are dropped from training after the draw, so they are never trained on and the
    draw stays what it was. With no `holdout` and named `holdout_sets`, the first of those validates.
    """
    never = held_out_paths()
    paths = [p for folder in cfg.data for p in list_images(folder)]
    if cfg.holdout <= 0:
        val = holdout(cfg.holdout_sets[0]) if cfg.holdout_sets else list_images(cfg.val)
        return [p for p in paths if p.resolve() not in never], val
    if cfg.holdout >= len(paths):
        raise SystemExit(f"holdout={cfg.holdout} leaves no training image (the data has {len(paths)})")
    order = np.random.default_rng(cfg.seed).permutation(len(paths))  # drawn before the named hold-outs go
    held = {int(i) for i in order[: cfg.holdout]}
    return ([p for i, p in enumerate(paths) if i not in held and p.resolve() not in never],
            [p for i, p in enumerate(paths) if i in held])


def extra_images(folders: tuple[str, ...], val: list[Path]) -> list[Path]:
    """Images of the training-only folders, less any whose pixels equal a validation image.

    Extra data often comes from the same public collection as the hold-out (a packaged clip-art set), so
    the check is on decoded pixels, not on file names, lest the run validate on what it trained on. The
    named hold-outs (`trainer.holdouts`, e.g. the manga pages) are skipped the same way.
    """
    if not folders:
        return []
    for folder in folders:
        if not Path(folder).is_dir():
            hint = " (make it with: python -m trainer.screentone --out runs/screentone)" if "screentone" in folder else ""
            raise SystemExit(f"extra folder {folder} not found{hint}")
    never = held_out_paths()
    held = {pixel_digest(p) for p in [*val, *never]}
    paths = [p for folder in folders for p in list_images(folder)]
    kept = [p for p in paths if p.resolve() not in never and pixel_digest(p) not in held]
    print(f"extra data: {len(kept)} images ({len(paths) - len(kept)} equal to a validation or hold-out image, "
          "skipped)", file=sys.stderr)
    return kept


def pixel_digest(path: Path) -> str:
    """SHA-256 of an image's decoded RGB pixels and size."""
    rgb = load_rgb(path)
    return hashlib.sha256(repr(rgb.shape).encode() + rgb.tobytes()).hexdigest()


def picture_mse(net: ESPCN, pairs: list[Pair]) -> np.ndarray:
    """MSE of the network (as it runs, edge mirrored, no clamp) on each whole training picture."""
    net.eval()
    out = np.array([float(np.mean((upscale_plane(net, p.lr_y, clamp=False) - p.hr_y) ** 2)) for p in pairs])
    net.train()
    return out


def validate(net: ESPCN, pairs: list[Pair], scale: int) -> tuple[float, float]:
    """Mean (Y-PSNR, SSIM) of the network over validation pairs, by `trainer.eval`'s protocol."""
    net.eval()
    mean = np.mean(score(pairs, lambda y: upscale_plane(net, y), scale), axis=0)
    net.train()
    return float(mean[0]), float(mean[1])


def init_from(net: ESPCN, path: str) -> int:
    """Copy every parameter whose name and shape match (e.g. x2 feature layers into an x3 net); returns
    how many of the net's tensors were set.

    `path` is a checkpoint or an exported ONNX file, so a run can continue from the shipped weights.
    """
    if path.endswith(".onnx"):
        src = state_from_onnx(path)
    else:
        src = torch.load(path, map_location="cpu", weights_only=True)["model"]
    own = net.state_dict()
    same = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    own.update(same)
    net.load_state_dict(own)
    print(f"init from {path}: {len(same)}/{len(own)} tensors", file=sys.stderr)
    return len(same)


def calibrate(net: ESPCN, pairs: list[Pair], report: bool = True) -> None:
    """Per-channel ranges of the int8 tanh inputs (trainer.quant) from up to CALIBRATION_PICTURES evenly
    spaced training pictures (`--extra` ones included), the same in every process (they hold the same
    picture list; DDP broadcasts process 0's buffers anyway)."""
    picks = pairs[:: max(1, math.ceil(len(pairs) / CALIBRATION_PICTURES))]
    ranges = calibrate_ranges(net, [p.lr_y for p in picks])
    for r in ranges if report else ():
        print(f"calibrated int8 input ranges on {len(picks)} pictures: {r.min():.3f} .. {r.max():.3f} "
              f"(mean {r.mean():.3f})", file=sys.stderr)


def teacher_for(cfg: TrainConfig) -> ESPCN:
    """The float network `--distill` learns from: the --init_from weights, unquantized, frozen."""
    teacher = ESPCN(ESPCNConfig(scale=cfg.scale, channels=cfg.channels, activation=cfg.activation))
    loaded, total = init_from(teacher, cfg.init_from), len(teacher.state_dict())
    if loaded != total:  # a teacher with random layers would teach noise
        raise SystemExit(f"--distill: {cfg.init_from} sets only {loaded} of the teacher's {total} tensors; "
                         "distil from a model of the same scale and shape")
    return teacher.eval().requires_grad_(False)


def parent_training(path: str) -> dict | None:
    """The `training` metadata of the ONNX a run continues from, so the model card keeps the lineage."""
    if not path.endswith(".onnx"):
        return None
    from .export import read_metadata

    text = read_metadata(path).get("training")
    return json.loads(text) if text else None


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def checkpoint(net: ESPCN, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig, sampler: PatchSampler,
               history: dict) -> dict:
    """The one checkpoint dict: everything a resumed run needs to repeat the uninterrupted one."""
    return {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "config": cfg.to_dict(), "arch": dataclasses.asdict(net.cfg), "sampler": sampler.rng.bit_generator.state,
            "history": history, **({"picture_mse": sampler.picture_mse.tolist()} if cfg.loss == "picture_db" else {})}


def plot(history: dict, path: Path) -> None:
    """Loss and validation-PSNR curves as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    losses = [v for _, v in history["loss"]]
    if losses:
        a.plot([s for s, _ in history["loss"]], losses)
    # logmse is in dB (negative): a log axis only suits the positive pixel losses.
    a.set(xlabel="step", ylabel="train loss", yscale="log" if losses and min(losses) > 0 else "linear", title="loss")
    if history["val"]:
        steps, vals = zip(*history["val"])
        b.plot(steps, vals, marker="o")
    b.set(xlabel="step", ylabel="Y-PSNR (dB)", title="validation")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(cfg: TrainConfig, resume: bool = False, command: str = "", device: str = "auto") -> Path:
    """Run (or resume) training; returns the path of the final checkpoint.

    `command` (the command line) is appended to the checkpoint's history, so the model card can
    list every invocation that made the weights, resumes included. Under torchrun each process trains on
    its slice of the global batch (`trainer.distributed`); process 0 validates and saves.
    """
    world = init_world(device)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_paths, val_paths = split_data(cfg)
    extra_paths = [extra_images((folder,), val_paths) for folder in cfg.extra]  # one group per folder
    net = ESPCN(ESPCNConfig(scale=cfg.scale, channels=cfg.channels, activation=cfg.activation, quant=cfg.qat))
    sampler = PatchSampler(load_pairs("", cfg.scale, train_paths), cfg.scale, cfg.patch, cfg.augment, cfg.seed,
                           context=net.cfg.radius if cfg.context else 0,
                           extra=[load_pairs("", cfg.scale, g) for g in extra_paths], extra_share=cfg.extra_share)
    val_pairs = load_pairs("", cfg.scale, val_paths)
    net.to(world.device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    step, history = 0, {"loss": [], "val": [], "seconds": 0.0, "border": BORDER}  # how patches met the edge
    last = out / "last.pt"
    if resume and last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        if (was := ckpt["config"].get("qat_ranges", "full")) != cfg.qat_ranges:
            raise SystemExit(f"--resume: this run holds qat_ranges {was!r}; it cannot change to {cfg.qat_ranges!r}")
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sampler.rng.bit_generator.state = ckpt["sampler"]
        step, history = ckpt["step"], ckpt["history"]
        if "picture_mse" in ckpt:
            sampler.weigh_pictures(np.asarray(ckpt["picture_mse"]), LOGMSE_FLOOR)
        history.setdefault("border", f"zero-then-{BORDER}")  # a run begun before runs recorded their edge
        if world.main:
            print(f"resumed {last} at step {step}", file=sys.stderr)
    elif cfg.init_from:
        init_from(net, cfg.init_from)
        history["parent"] = parent_training(cfg.init_from)
    if cfg.qat and not (resume and last.exists()):  # a resumed run has its ranges in the checkpoint
        if cfg.qat_ranges == "calibrated":
            calibrate(net, sampler.pairs, world.main)
        else:
            reset_ranges(net)  # init_from a calibrated file: its ranges are not this run's
    if cfg.loss == "picture_db" and not (resume and last.exists()):
        sampler.weigh_pictures(picture_mse(net, sampler.pairs), LOGMSE_FLOOR)  # at the starting weights
    history.setdefault("commands", []).append(command or f"train({cfg})")
    teacher = teacher_for(cfg).to(world.device) if cfg.distill else None
    model = wrap(net, world)
    net.train()
    bar = tqdm(total=cfg.steps, initial=step, file=sys.stderr, dynamic_ncols=True, mininterval=2,
               disable=not world.main)
    run_loss, t0 = 0.0, time.time()
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        lr_np, hr_np, w_np = sampler.batch(cfg.batch)  # the global batch, the same in every process
        denom = normaliser(cfg.loss, w_np)
        x, hr, weight = (torch.from_numpy(a).to(world.device) for a in world.shard(lr_np, hr_np, w_np))
        sr = model(x)
        if teacher is not None:
            with torch.no_grad():
                hr = teacher(x)
        part = loss_fn(cfg.loss, sr, hr, weight, denom) * world.size  # DDP averages gradients over processes
        loss = world.mean(part)
        if not torch.isfinite(loss):
            raise SystemExit(f"loss is {loss.item()} at step {step}: stopping without saving "
                             f"(last good checkpoint: {last}); lower --lr or check the data")
        opt.zero_grad(set_to_none=True)
        part.backward()
        opt.step()
        step += 1
        run_loss = 0.98 * run_loss + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 50 == 0:
            mse = float(loss_fn("l2", sr.detach(), hr, weight))
            bar.set_postfix(loss=f"{run_loss:.5f}", psnr=f"{10 * math.log10(1 / max(mse, 1e-12)):.2f}")
            history["loss"].append((step, run_loss))
        bar.update(1)
        if not world.main:
            continue
        if step % cfg.eval_every == 0 or step == cfg.steps:
            val_psnr, val_ssim = validate(net, val_pairs, cfg.scale)
            history["val"].append((step, val_psnr))
            minutes = (history.get("seconds", 0.0) + time.time() - t0) / 60
            bar.write(f"step {step}: val Y-PSNR {val_psnr:.3f} dB, SSIM {val_ssim:.4f} ({minutes:.1f} min)",
                      file=sys.stderr)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            if not all(torch.isfinite(p).all() for p in net.parameters()):
                raise SystemExit(f"non-finite weights at step {step}: stopping without saving "
                                 f"(last good checkpoint: {last}); lower --lr")
            history["seconds"] = history.get("seconds", 0.0) + time.time() - t0
            t0 = time.time()
            save_atomic(checkpoint(net, opt, step, cfg, sampler, history), last)
            plot(history, out / "curves.png")
    bar.close()
    close(world)
    return last


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: parse the config, train."""
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="where to train (auto: CUDA when torch sees a GPU); not part of the run's config")
    where, rest = pre.parse_known_args(argv)
    cfg, resume = TrainConfig.from_args(rest)
    train(cfg, resume, "python -m trainer.train " + shlex.join(rest), where.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
