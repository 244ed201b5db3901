"""Data-parallel training support: torchrun environment, process group, sharded data order.

Launched by ``torchrun``, every process reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, joins a
process group (gloo on CPU, nccl on CUDA) and wraps the model in DistributedDataParallel. The
data order is one seeded permutation per epoch shared by all ranks, each rank taking every
``world_size``-th index (the DistributedSampler scheme), so ``world_size`` ranks with batch
``b`` see the same samples per step as one process with batch ``world_size * b``.

The process group is joined once per process and kept until the interpreter exits. Destroying
and re-creating it in the same process is unsafe: ``destroy_process_group`` resets torch's
group counter, so the new default group gets the old name and its gloo rendezvous reuses the
old keys (``default_pg/0//cpu//0/<rank>``) in torchrun's long-lived agent store. A rank that
reads its peer's stale address before the peer overwrites it waits forever to connect.
"""

from __future__ import annotations

import atexit
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

__all__ = [
    "DistContext",
    "InfiniteSampler",
    "all_gather_objects",
    "all_reduce_mean",
    "any_rank",
    "barrier",
    "context_from_env",
    "resolve_device",
    "setup_distributed",
    "wrap_model",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly trivial) data-parallel job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main rank writes checkpoints and logs."""
        return self.rank == 0


def _env_int(env: Mapping[str, str], name: str) -> int:
    if name not in env:
        raise ValueError(f"environment variable {name} is required when WORLD_SIZE > 1 (launch with torchrun)")
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"environment variable {name}: expected an int, got {env[name]!r}") from None


def context_from_env(env: Mapping[str, str] | None = None) -> DistContext:
    """The torchrun context from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (1 process if unset)."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return DistContext()
    world = _env_int(env, "WORLD_SIZE")
    if world < 1:
        raise ValueError(f"environment variable WORLD_SIZE: expected >= 1, got {world}")
    if world == 1:
        return DistContext()
    rank, local = _env_int(env, "RANK"), _env_int(env, "LOCAL_RANK")
    if not 0 <= rank < world:
        raise ValueError(f"environment variable RANK: expected 0..{world - 1}, got {rank}")
    if local < 0:
        raise ValueError(f"environment variable LOCAL_RANK: expected >= 0, got {local}")
    return DistContext(rank=rank, world_size=world, local_rank=local)


def resolve_device(spec: str, ctx: DistContext) -> torch.device:
    """``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"`` -> a device; DDP ranks use cuda:LOCAL_RANK."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if not spec.startswith("cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device: {spec!r} requested but CUDA is not available")
    if ctx.enabled and spec != "cuda":
        raise ValueError(f"device: use 'cuda' or 'auto' under torchrun (each rank takes cuda:LOCAL_RANK), got {spec!r}")
    index = ctx.local_rank if ctx.enabled else (torch.device(spec).index or 0)
    device = torch.device("cuda", index)
    if device.index >= torch.cuda.device_count():
        raise ValueError(f"device: {device} requested but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def setup_distributed(ctx: DistContext, device: torch.device) -> None:
    """Join the process group if ``ctx`` is distributed and this process has not joined yet.

    A group created here lives until the interpreter exits (see the module docstring for why
    it is not destroyed between runs), so later calls, e.g. a resume in the same process,
    reuse it.
    """
    if not ctx.enabled:
        return
    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (ctx.rank, ctx.world_size):
            raise ValueError(
                f"process group is rank {dist.get_rank()} of "
                f"{dist.get_world_size()}, but the environment says rank "
                f"{ctx.rank} of {ctx.world_size}"
            )
        return
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo", rank=ctx.rank, world_size=ctx.world_size
    )
    atexit.register(_destroy_at_exit)


def _destroy_at_exit() -> None:
    # Release the backend cleanly (NCCL warns otherwise) unless the caller already did.
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when distributed (averages gradients), else as is.

    DDP broadcasts rank 0's parameters and buffers at construction, so all ranks start equal.
    """
    if not ctx.enabled:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_reduce_mean(value: float, ctx: DistContext, device: torch.device) -> float:
    """Mean of a float over ranks (identity in a single process)."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / ctx.world_size


def any_rank(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on at least one (e.g. a stop signal)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if ctx.enabled:
        dist.barrier()


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


class InfiniteSampler(Sampler[int]):
    """Endless per-rank stream of dataset indices, one reshuffle per epoch.

    Epoch ``e`` is ``torch.randperm(size)`` drawn from a generator seeded with ``seed + e``,
    padded by wrapping around to a multiple of ``world_size``; this rank takes positions
    ``rank, rank + world_size, ...`` of it. ``start`` skips that many of this rank's indices,
    which is how a resumed run continues the data order: checkpoint :meth:`state_dict` with the
    number of indices training consumed (DataLoader workers prefetch, so the sampler itself
    cannot know how many were used).
    """

    def __init__(self, size: int, *, seed: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if size < 1:
            raise ValueError(f"size: the dataset must hold at least one sample, got {size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank/world_size: expected 0 <= rank < world_size, got {rank}/{world_size}")
        if start < 0:
            raise ValueError(f"start: expected >= 0, got {start}")
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.start = start
        self.per_epoch = math.ceil(size / world_size)  # indices per rank per epoch

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's indices for ``epoch``."""
        g = torch.Generator()
        g.manual_seed(self.seed + epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        total = self.per_epoch * self.world_size
        order = (order * math.ceil(total / self.size))[:total]  # wrap-around padding
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.per_epoch)
        while True:
            yield from self.epoch_indices(epoch)[offset:]
            epoch, offset = epoch + 1, 0

    def state_dict(self, consumed: int) -> dict[str, int]:
        """Sampler state after this rank consumed ``consumed`` indices since the very start."""
        return {"seed": self.seed, "size": self.size, "world_size": self.world_size, "consumed": consumed}

    @classmethod
    def from_state(cls, state: Mapping[str, int], *, size: int, rank: int = 0, world_size: int = 1) -> InfiniteSampler:
        """Continue the data order saved by :meth:`state_dict` (same dataset size, same ranks)."""
        for key, here in (("size", size), ("world_size", world_size)):
            if state[key] != here:
                raise ValueError(
                    f"sampler state: saved with {key}={state[key]} but now "
                    f"{key}={here}; the data order cannot be continued exactly"
                )
        return cls(size, seed=state["seed"], rank=rank, world_size=world_size, start=state["consumed"])
