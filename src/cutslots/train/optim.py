"""The optimiser of ``train.optimizer`` and the learning-rate schedule of ``train.schedule``."""

from __future__ import annotations

import math

import torch
from torch import nn

from cutslots.config import OptimizerConfig, TrainConfig

__all__ = ["lr_factor", "make_optimizer", "make_scheduler"]


def make_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimiser of ``train.optimizer`` over the model's parameters."""
    kind = torch.optim.AdamW if config.kind == "adamw" else torch.optim.Adam
    betas = (config.betas[0], config.betas[1])
    return kind(model.parameters(), lr=config.lr, betas=betas, weight_decay=config.weight_decay)


def lr_factor(step: int, *, schedule: str, decay_rate: float, decay_steps: int, warmup_steps: int, steps: int) -> float:
    """Multiplier of the base lr for the update at (0-based) ``step`` of a ``steps``-step run.

    A linear warmup ``(step + 1) / warmup_steps`` during the first ``warmup_steps`` updates (the
    +1 keeps the very first update from having lr 0), times
    - ``exponential`` (Slot Attention's): ``decay_rate ** (step / decay_steps)``;
    - ``cosine``: ``(1 + cos(pi t)) / 2`` with ``t`` the fraction of the post-warmup updates done,
      so the last update has an lr near 0 (``decay_rate`` and ``decay_steps`` unused).
    """
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "exponential":
        return warmup * decay_rate ** (step / decay_steps)
    if schedule == "cosine":
        t = min(1.0, max(0, step - warmup_steps) / max(1, steps - warmup_steps))
        return warmup * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"schedule must be 'exponential' or 'cosine', got {schedule!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR applying :func:`lr_factor`; call ``step()`` once per optimiser step."""

    def factor(step: int) -> float:
        return lr_factor(
            step,
            schedule=config.schedule,
            decay_rate=config.decay_rate,
            decay_steps=config.decay_steps,
            warmup_steps=config.warmup_steps,
            steps=config.steps,
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
