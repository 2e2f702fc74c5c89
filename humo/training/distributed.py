"""Data parallelism under torchrun: process group set-up, model wrapping (DDP, or FSDP2 per block), reductions.

Run without torchrun, everything here is a no-op on one process. Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK
set) the backend is NCCL on GPUs and gloo on CPU. Each process computes its part of the global batch
(see curriculum.TaskBatchSampler); gradients are averaged across processes, so N processes with batch B make
the same update as one process with batch N*B.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from humo.errors import HumoError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """ "auto" -> the local rank's GPU when CUDA is available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HumoError(f"device {name}: CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group when launched by torchrun; else a single-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def wrap_model(model: nn.Module, info: DistInfo, mode: str = "ddp") -> nn.Module:
    """DDP (the default) or FSDP2 (``fully_shard`` on each block, then the root) when running on >1 process."""
    if not info.enabled:
        return model
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of `values` over processes (a copy; `values` itself is unchanged)."""
    if not info.enabled:
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo, together: bool = True) -> None:
    """Leave the process group of a distributed run (`humo.sequence_parallel.shutdown`: at a barrier when
    `together`, i.e. the run ended normally on every rank)."""
    if info.enabled:
        from humo.sequence_parallel import shutdown as leave

        leave(together)
