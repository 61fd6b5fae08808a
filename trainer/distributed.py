"""Data-parallel training under `torchrun`: one process per GPU (NCCL) or several on the CPU (gloo).

A run under torchrun is the single-process run with the same global batch, split across processes:
every process draws the whole global batch from the same seeded sampler (so the sampler state, and with
it the checkpoint, is the same everywhere), keeps its own contiguous slice, and divides its loss by the
*global* normaliser. DistributedDataParallel then averages gradients across the processes, which gives
the gradient of the global loss; Adam sees the same numbers as in one process, up to float summation
order. Process 0 alone validates, writes checkpoints and draws the progress bar.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class World:
    """This process's place in the run: rank, number of processes and the device it trains on."""

    rank: int = 0
    size: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """Process 0 validates, saves and reports."""
        return self.rank == 0

    def shard(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """This process's contiguous slice of each global-batch array (along the batch axis)."""
        if self.size == 1:
            return arrays
        n = len(arrays[0])
        if n % self.size:
            raise SystemExit(f"batch {n} does not split over {self.size} processes; use a multiple of {self.size}")
        k = n // self.size
        return tuple(a[self.rank * k : (self.rank + 1) * k] for a in arrays)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """`value` averaged over the processes (the global loss from the per-process parts)."""
        if self.size == 1:
            return value
        out = value.detach().clone()
        torch.distributed.all_reduce(out)
        return out / self.size


def init_world(device: str = "auto") -> World:
    """Join the torchrun group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on the CPU); else one process.

    `device` is "auto" (CUDA when torch sees a GPU), "cpu" or "cuda"."""
    size, rank, local = (int(os.environ.get(k, d)) for k, d in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
    cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU")
    name = f"cuda:{local}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local)
    if size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return World(rank, size, name)


def wrap(net: torch.nn.Module, world: World) -> torch.nn.Module:
    """The module the loop calls: `net` itself, or a DistributedDataParallel wrapper of it."""
    if world.size == 1:
        return net
    ids = [torch.device(world.device).index] if world.device.startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


def close(world: World) -> None:
    """Wait for process 0 to finish its last validation and checkpoint, then leave the process group.

    Without the barrier a process that is done tears gloo down under one that is still working, which
    aborts the run now and then (seen here: SIGABRT in one run of three)."""
    if world.size > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
