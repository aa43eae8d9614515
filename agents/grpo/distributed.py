"""Data-parallel helpers for the learner (``docs/learner.md`` §4.6, §7.4): gloo on CPU, NCCL on GPU.

Each rank rolls out whole groups. The small per-trajectory tensors (components, return, group and
dataset ids: N×(2K+3) numbers) are all-gathered so every rank computes the same advantages on the
global batch, and calibration state stays identical without extra traffic. The loss denominator is
global, each rank's loss is multiplied by the world size, and gradients are averaged over ranks
(what DDP does), so the update equals the single-process update on the same global batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from recal_gym.errors import InvalidConfig

__all__ = [
    "DistContext",
    "all_gather_cat",
    "all_gather_objects",
    "all_reduce_sum",
    "average_gradients",
    "init_from_env",
    "shard",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class DistContext:
    """This process's place in the data-parallel group (``world_size == 1``: no communication)."""

    rank: int = 0
    """Rank of this process."""
    world_size: int = 1
    """Number of processes."""

    def __post_init__(self) -> None:
        """Validate."""
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise InvalidConfig(f"DistContext(rank={self.rank!r}, world_size={self.world_size!r}) is invalid.")

    @property
    def active(self) -> bool:
        """True when collectives are needed."""
        return self.world_size > 1


def init_from_env(backend: str = "gloo") -> DistContext:
    """Join the process group described by ``torchrun``'s environment (single process if absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's contiguous share of ``items`` (e.g. the step's questions: whole groups per rank).

    Raises:
        InvalidConfig: ``len(items)`` is not divisible by the world size.
    """
    if len(items) % ctx.world_size:
        raise InvalidConfig(
            f"{len(items)} questions per step cannot be split evenly over {ctx.world_size} ranks; "
            "make questions_per_step a multiple of the world size."
        )
    k = len(items) // ctx.world_size
    return list(items[ctx.rank * k : (ctx.rank + 1) * k])


def all_gather_cat(x: Tensor, ctx: DistContext) -> Tensor:
    """Concatenate ``x`` (first dim may differ per rank) over ranks, in rank order."""
    if not ctx.active:
        return x
    n = torch.tensor([x.shape[0]], dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, n)
    width = int(max(int(s) for s in sizes))
    padded = torch.zeros((width, *x.shape[1:]), dtype=x.dtype)
    padded[: x.shape[0]] = x
    parts = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes, strict=True)])


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Gather one picklable object per rank, in rank order."""
    if not ctx.active:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(x: Tensor, ctx: DistContext) -> Tensor:
    """Sum ``x`` over ranks (returns a new tensor)."""
    y = x.clone()
    if ctx.active:
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y


def average_gradients(params: Iterable[torch.nn.Parameter], ctx: DistContext) -> None:
    """Average ``.grad`` over ranks in place (DDP's reduction; a no-op for one process)."""
    if not ctx.active:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:  # every rank must reduce the same list, even where a parameter got no gradient
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
