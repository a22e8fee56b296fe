"""torchrun's environment, the device, and the collectives the loops use (identities with one process)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from s3prl_colld.config import ConfigError

PG_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process initialised the process group (and destroys it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def ddp(self) -> bool:
        return self.world_size > 1


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available and ``pref`` (auto | cpu | cuda) allows, else CPU."""
    if pref == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config.runner.device=cuda but no CUDA device is available: use auto or cpu")
    if pref == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
    return torch.device("cuda", local_rank)


def setup_distributed(device_pref: str) -> tuple[DistInfo, torch.device]:
    """Read torchrun's environment, pick the device, init the process group (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        # generous timeout: rank 0's prepare() (e.g. k-means) runs while the others wait
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=PG_TIMEOUT)
        owns = True
    return DistInfo(rank, world, local_rank, owns), device


def all_reduce_(tensor: torch.Tensor, d: DistInfo, op: Any = dist.ReduceOp.SUM) -> torch.Tensor:
    """In-place all-reduce (sum by default) across ranks; identity with one process."""
    if d.ddp:
        dist.all_reduce(tensor, op=op)
    return tensor


def all_gather_objects(obj: Any, d: DistInfo) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects)."""
    if not d.ddp:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) dict / list / tuple to ``device``."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
