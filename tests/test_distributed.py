"""torchrun with DistributedDataParallel: 2 CPU processes (gloo) train what one process trains."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="trainer tests need torch (pip install .[train])")

from trainer import train as train_mod  # noqa: E402
from trainer.distributed import World  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], nproc: int, tmp_path: Path) -> None:
    """`python -m trainer.train ARGS`, in one process or under torchrun with `nproc` CPU processes."""
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
              if nproc > 1 else [sys.executable])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launch, "-m", "trainer.train", *args, "--device", "cpu"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("loss,context", [("l2", "true"), ("logmse", "false")])
def test_two_processes_equal_one_with_the_same_global_batch(image_dir, tmp_path, loss, context):
    """Same steps, same sampler state, same weights within float tolerance; only process 0 writes."""
    common = ["--data", str(image_dir), "--val", str(image_dir), "--steps", "6", "--batch", "8", "--patch", "10",
              "--warmup", "2", "--lr", "3e-3", "--loss", loss, "--context", context, "--eval_every", "6",
              "--ckpt_every", "3", "--threads", "1"]
    _run([*common, "--out", str(tmp_path / "one")], 1, tmp_path)
    _run([*common, "--out", str(tmp_path / "two")], 2, tmp_path)
    one, two = (torch.load(tmp_path / d / "last.pt", weights_only=False) for d in ("one", "two"))
    assert one["step"] == two["step"] == 6
    assert str(one["sampler"]) == str(two["sampler"])
    moved = 0.0
    for k, v in one["model"].items():
        torch.testing.assert_close(two["model"][k], v, rtol=1e-4, atol=1e-6)
        moved = max(moved, float((v - two["model"][k]).abs().max()))
    start = torch.load(tmp_path / "one" / "last.pt", weights_only=False)["history"]["loss"]
    assert one["history"]["val"] and [s for s, _ in one["history"]["val"]] == [s for s, _ in two["history"]["val"]]
    assert np.allclose([v for _, v in one["history"]["val"]], [v for _, v in two["history"]["val"]], atol=1e-3)
    assert not list((tmp_path / "two").glob("*.tmp*")) and start is not None


def test_two_processes_resume_like_one(image_dir, tmp_path):
    """A torchrun run stopped at a checkpoint and resumed under torchrun ends where the uninterrupted one does."""
    common = ["--data", str(image_dir), "--val", str(image_dir), "--batch", "8", "--patch", "10", "--warmup", "2",
              "--lr", "3e-3", "--eval_every", "100", "--ckpt_every", "3", "--threads", "1"]
    _run([*common, "--out", str(tmp_path / "whole"), "--steps", "6"], 1, tmp_path)
    _run([*common, "--out", str(tmp_path / "split"), "--steps", "3"], 2, tmp_path)
    _run([*common, "--out", str(tmp_path / "split"), "--steps", "6", "--resume"], 2, tmp_path)
    whole, split = (torch.load(tmp_path / d / "last.pt", weights_only=False) for d in ("whole", "split"))
    assert split["step"] == 6
    for k, v in whole["model"].items():
        torch.testing.assert_close(split["model"][k], v, rtol=1e-4, atol=1e-6)


def test_world_splits_the_global_batch_and_its_loss():
    """Slices are contiguous; per-process losses over the global normaliser sum to the global loss."""
    rng = np.random.default_rng(0)
    sr, hr = rng.random((8, 1, 6, 6), np.float32), rng.random((8, 1, 6, 6), np.float32)
    w = (rng.random((8, 1, 6, 6)) > 0.3).astype(np.float32)
    whole = float(train_mod.loss_fn("l2", *(torch.from_numpy(a) for a in (sr, hr, w))))
    denom = train_mod.normaliser("l2", w)
    parts = []
    for rank in range(2):
        s, h, m = World(rank, 2).shard(sr, hr, w)
        assert s.shape[0] == 4 and np.array_equal(s, sr[rank * 4 : rank * 4 + 4])
        parts.append(float(train_mod.loss_fn("l2", *(torch.from_numpy(a) for a in (s, h, m)), denom)))
    assert sum(parts) == pytest.approx(whole, rel=1e-6)
    assert parts[0] != pytest.approx(whole / 2, rel=1e-3)  # the slices' own means would be wrong
    with pytest.raises(SystemExit, match="multiple of 3"):
        World(0, 3).shard(sr)
