"""Synchronous data parallelism (paper 3.1: 3.75x on 4 GPUs) with torch.distributed.

Under ``torchrun`` (RANK/WORLD_SIZE/LOCAL_RANK set) each process takes one device and a
shard of every global batch; gradients are averaged by DDP, metrics summed across ranks,
and rank 0 alone writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def setup(device: str) -> Context:
    """Join the process group torchrun describes, or run as a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Context(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def all_sum(values: list[float], ctx: Context) -> list[float]:
    """Sum a few numbers across ranks (identity on one process)."""
    if not ctx.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_flag(flag: bool, ctx: Context) -> bool:
    """Rank 0's decision, for all ranks (stop early, save now)."""
    if not ctx.distributed:
        return flag
    tensor = torch.tensor([int(flag)], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.broadcast(tensor, 0)
    return bool(tensor.item())


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
