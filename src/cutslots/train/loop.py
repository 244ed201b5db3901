"""The training loop: steps, checkpoints, exact resume, evaluation and logging, DDP.

``train`` is generic over the model: anything whose ``forward(images)`` returns a mapping with
``"recon"`` and that has a ``loss(images, out) -> scalar tensor`` method; and over the dataset:
any map-style dataset whose items are dicts with ``"image"`` (3, H, W). Resuming restores
model, optimiser, scheduler, step, per-rank RNG states and the sampler position, so N steps
in one go and N/2 + N/2 with a resume give bitwise-identical weights on CPU (given the same
torch thread count: CPU reductions split their work per thread).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from cutslots.config import ExperimentConfig, TrainConfig, to_dict, upgrade_legacy, validate
from cutslots.train.batches import Stream, batch_inputs, make_loader
from cutslots.train.checkpoint import (
    CHECKPOINT_NAME,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from cutslots.train.distributed import (
    DistContext,
    InfiniteSampler,
    all_gather_objects,
    all_reduce_mean,
    any_rank,
    barrier,
    context_from_env,
    resolve_device,
    setup_distributed,
    wrap_model,
)
from cutslots.train.logging import RunLogger
from cutslots.train.optim import make_optimizer, make_scheduler
from cutslots.train.precision import Precision
from cutslots.train.progress import progress_bar
from cutslots.train.signals import GracefulStop

__all__ = [
    "CHECKPOINT_NAME",
    "EvalFn",
    "TrainSummary",
    "eval_mode",
    "seed_everything",
    "train",
]


# eval_fn(model, step) -> {name: a number, or an image as an (H, W, 3) uint8 RGB array (e.g.
# cutslots.plots.figure_image)}; runs on rank 0 in eval mode under no_grad.
EvalFn = Callable[[nn.Module, int], Mapping[str, float | np.ndarray]]

# Train-config keys that shape the trajectory: a resume must not change them.
_TRAJECTORY_KEYS = (
    "batch_size",
    "optimizer",
    "schedule",
    "decay_rate",
    "decay_steps",
    "warmup_steps",
    "grad_clip",
    "seed",
    "precision",
    "accumulate",
)


@dataclass(frozen=True)
class TrainSummary:
    """Outcome of :func:`train`."""

    step: int  # optimiser steps completed in total
    start_step: int  # step the run started (or resumed) from
    interrupted: bool  # stopped early by SIGINT/SIGTERM (a checkpoint was written)
    checkpoint: Path
    metrics: dict[str, float] = field(default_factory=dict)  # last logged value of each scalar


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode, then give it back its previous train/eval
    flag, also when the block raises (a caller mid-training must keep training)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _check_resume_compatible(saved: Mapping[str, Any] | None, config: TrainConfig, path: Path) -> None:
    if saved is None or "train" not in saved:
        raise ValueError(f"{path}: holds no training config, so it cannot be resumed")
    # Through the schema: an older layout is upgraded and its unwritten keys get their defaults.
    before = to_dict(validate(TrainConfig, upgrade_legacy(dict(saved), str(path))["train"], str(path)))
    now = to_dict(config)
    # A cosine schedule is laid out over the whole run, so its length is part of it too.
    keys = _TRAJECTORY_KEYS + (("steps",) if config.schedule == "cosine" else ())
    changed = [
        f"{k} ({before[k]!r} -> {now[k]!r})" for k in keys if before[k] != now[k] and not isinstance(now[k], dict)
    ]
    changed += [
        f"{k}.{leaf} ({before[k][leaf]!r} -> {now[k][leaf]!r})"
        for k in keys
        if isinstance(now[k], dict)
        for leaf in now[k]
        if before[k][leaf] != now[k][leaf]
    ]
    if changed:
        raise ValueError(f"{path}: cannot resume exactly, these train settings changed: " + ", ".join(changed))


def train(
    model: nn.Module,
    train_dataset: Dataset[dict[str, torch.Tensor]],
    config: TrainConfig,
    eval_fn: EvalFn | None = None,
    resume: bool = False,
    *,
    experiment: ExperimentConfig | None = None,
    input_key: str = "image",
) -> TrainSummary:
    """Train ``model`` on ``train_dataset`` for ``config.steps`` optimiser steps.

    Items are dicts; ``item[input_key]`` (``(3, H, W)`` images, or e.g. ``(2, 3, H, W)`` frame
    pairs with ``input_key="frames"``) is what the model and its loss see. A map-style dataset
    is sampled by a seeded, checkpointed infinite sampler; an ``IterableDataset`` is streamed
    pass after pass (it must shard itself over DDP ranks and workers) and a resume skips the
    batches already consumed.

    Writes ``<out_dir>/checkpoint.pt`` every ``checkpoint_every`` steps, at the end and on
    SIGINT/SIGTERM (after finishing the current step), and logs the training scalars every
    ``log_every`` steps and ``eval_fn``'s scalars and images every ``eval_every`` steps to
    the backends of ``loggers`` (:mod:`cutslots.train.logging`). ``resume=True`` continues
    from that checkpoint; without it an existing checkpoint is an error rather than being
    overwritten. ``experiment`` (the full config) is stored in the checkpoint when given.
    Under torchrun, trains with DDP: the global ``batch_size`` is split over ranks and only
    rank 0 writes files; the process group is joined on the first call and kept until the
    process exits. ``precision`` and ``accumulate`` (micro-batches of ``batch_size`` per
    step): :mod:`cutslots.train.precision`.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected TrainConfig, got {type(config).__name__}")
    if experiment is not None and experiment.train != config:
        raise ValueError(
            "experiment: its train section differs from config; pass the same "
            "TrainConfig (experiment.train) so the checkpoint records what ran"
        )
    if not callable(getattr(model, "loss", None)):
        raise TypeError(f"model: {type(model).__name__} has no loss(images, out) method")
    if not isinstance(train_dataset, IterableDataset) and len(train_dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("train_dataset: is empty")
    ctx = context_from_env()
    device = resolve_device(config.device, ctx)
    if config.batch_size % ctx.world_size:
        raise ValueError(f"batch_size: {config.batch_size} is not divisible by the {ctx.world_size} DDP ranks")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # the current device is where RNG states are captured
    setup_distributed(ctx, device)  # kept for the process's lifetime, reused by later calls
    return _run(model, train_dataset, config, eval_fn, resume, experiment, ctx, device, input_key)


@dataclass
class _Position:
    """Where a run stands: what a checkpoint stores besides the weights and RNG states."""

    step: int
    start_step: int
    consumed: int  # batches of a stream consumed before this process started
    window: list[float]  # this rank's losses since the last log line (saved, so logs resume too)
    clock: float  # seconds spent in training steps (not evaluation or checkpoints), all runs


def _check_out_dir(ckpt_path: Path, resume: bool) -> None:
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"resume: no checkpoint to resume from at {ckpt_path}")
    if not resume and ckpt_path.exists():
        raise ValueError(
            f"out_dir: {ckpt_path.parent} already holds a checkpoint; pass resume=True to "
            f"continue it or choose another out_dir"
        )


def _start(
    ckpt_path: Path,
    resume: bool,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    amp: Precision,
    config: TrainConfig,
    ctx: DistContext,
    size: int | None,
) -> tuple[_Position, InfiniteSampler | None]:
    """The run's position and sampler: restored from the checkpoint, or fresh (seeded)."""
    if not resume:
        seed_everything(config.seed + ctx.rank)  # distinct streams per rank (e.g. slot noise)
        sampler = (
            None if size is None else InfiniteSampler(size, seed=config.seed, rank=ctx.rank, world_size=ctx.world_size)
        )
        return _Position(step=0, start_step=0, consumed=0, window=[], clock=0.0), sampler
    ckpt = load_checkpoint(ckpt_path, model, optimizer=optimizer, scheduler=scheduler, restore_rng=True, rank=ctx.rank)
    _check_resume_compatible(ckpt.config, config, ckpt_path)
    amp.load_state_dict(ckpt.extra.get("grad_scaler"))
    if ckpt.step > config.steps:
        raise ValueError(f"steps: {config.steps} is fewer than the {ckpt.step} steps already done by {ckpt_path}")
    sampler = (
        None
        if size is None
        else InfiniteSampler.from_state(ckpt.extra["sampler"], size=size, rank=ctx.rank, world_size=ctx.world_size)
    )
    position = _Position(
        step=ckpt.step,
        start_step=ckpt.step,
        consumed=int(ckpt.extra.get("stream_batches", 0)),
        window=list(ckpt.extra["loss_windows"][ctx.rank]),
        clock=float(ckpt.extra.get("train_seconds", 0.0)),
    )
    return position, sampler


def _loss(net: nn.Module, model: nn.Module, images: torch.Tensor, step: int) -> tuple[torch.Tensor, float]:
    """The model's loss on ``images`` and its value, checked finite."""
    out = net(images)
    if not isinstance(out, Mapping) or "recon" not in out:
        raise TypeError(f"model: forward must return a dict with 'recon', got {type(out).__name__}")
    loss = model.loss(images, out)  # type: ignore[operator]  # checked callable by train()
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise TypeError(f"model.loss: expected a scalar tensor, got {loss!r}")
    loss_value = loss.item()
    if not math.isfinite(loss_value):  # stop before the update corrupts weights
        raise FloatingPointError(f"loss is {loss_value} at step {step + 1}")
    return loss, loss_value


def _update(
    net: nn.Module,
    model: nn.Module,
    next_images: Callable[[], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    grad_clip: float | None,
    step: int,
    amp: Precision,
) -> tuple[float, float]:
    """One optimiser step on ``amp.accumulate`` micro-batches from ``next_images``: returns
    (mean loss, gradient norm before clipping)."""
    optimizer.zero_grad(set_to_none=True)
    loss_value = amp.backward(net, lambda: _loss(net, model, next_images(), step))
    amp.scaler.unscale_(optimizer)  # fp16: clipping and the logged norm see the true gradients
    if grad_clip is not None:
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    else:
        grad_norm = nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    amp.scaler.step(optimizer)  # optimizer.step(), skipped by fp16 when the gradients overflowed
    amp.scaler.update()
    return loss_value, float(grad_norm)


@dataclass
class _Run:
    """The state of one training run, and the two things it does: a step and a checkpoint."""

    model: nn.Module
    net: nn.Module  # the model, DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: InfiniteSampler | None  # None: a stream
    at: _Position
    config: TrainConfig
    ctx: DistContext
    device: torch.device
    ckpt_path: Path
    saved_config: dict[str, Any]
    amp: Precision

    def step(self, batches: Iterator[Any], input_key: str) -> tuple[float, float]:
        """One optimiser step on the next ``accumulate`` batches: returns (the lr it used, the
        gradient norm). Its time, batch loading included, adds to ``at.clock``."""
        started = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        loss, grad_norm = _update(
            self.net,
            self.model,
            lambda: batch_inputs(next(batches), input_key, self.device),
            self.optimizer,
            self.config.grad_clip,
            self.at.step,
            self.amp,
        )
        self.scheduler.step()
        self.at.step += 1
        self.at.window.append(loss)
        self.at.clock += time.perf_counter() - started
        return lr, grad_norm

    def checkpoint(self) -> None:
        """Collective (every rank): rank 0 stores each rank's RNG state and loss window."""
        at, per_rank_batch = self.at, self.config.batch_size // self.ctx.world_size
        states = all_gather_objects((capture_rng_state(), list(at.window)), self.ctx)
        if self.ctx.is_main:
            extra: dict[str, Any] = {"loss_windows": [w for _, w in states], "train_seconds": at.clock}
            if self.amp.state_dict() is not None:
                extra["grad_scaler"] = self.amp.state_dict()
            if self.sampler is not None:
                extra["sampler"] = self.sampler.state_dict(at.step * self.config.accumulate * per_rank_batch)
            else:
                extra["stream_batches"] = (at.step - at.start_step) * self.config.accumulate + at.consumed
            save_checkpoint(
                self.ckpt_path,
                self.model,
                step=at.step,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                config=self.saved_config,
                rng_states=[r for r, _ in states],
                extra=extra,
            )
        barrier(self.ctx)  # no rank goes on (or returns) before the checkpoint is on disk


def _setup(
    model: nn.Module,
    dataset: Dataset[dict[str, torch.Tensor]],
    config: TrainConfig,
    resume: bool,
    experiment: ExperimentConfig | None,
    ctx: DistContext,
    device: torch.device,
) -> tuple[_Run, DataLoader]:
    ckpt_path = Path(config.out_dir) / CHECKPOINT_NAME
    _check_out_dir(ckpt_path, resume)
    size = None if isinstance(dataset, IterableDataset) else len(dataset)  # type: ignore[arg-type]
    model.to(device).train()
    optimizer = make_optimizer(model, config.optimizer)
    scheduler = make_scheduler(optimizer, config)
    amp = Precision(config.precision, config.accumulate, device)
    at, sampler = _start(ckpt_path, resume, model, optimizer, scheduler, amp, config, ctx, size)
    saved_config = to_dict(experiment) if experiment is not None else {"train": to_dict(config)}
    run = _Run(
        model,
        wrap_model(model, ctx, device),
        optimizer,
        scheduler,
        sampler,
        at,
        config,
        ctx,
        device,
        ckpt_path,
        saved_config,
        amp,
    )
    return run, make_loader(dataset, sampler, config, config.batch_size // ctx.world_size, device)


def _run(
    model: nn.Module,
    dataset: Dataset[dict[str, torch.Tensor]],
    config: TrainConfig,
    eval_fn: EvalFn | None,
    resume: bool,
    experiment: ExperimentConfig | None,
    ctx: DistContext,
    device: torch.device,
    input_key: str,
) -> TrainSummary:
    run, loader = _setup(model, dataset, config, resume, experiment, ctx, device)
    at = run.at
    logger = RunLogger(
        Path(config.out_dir),
        at.start_step,
        enabled=ctx.is_main,
        loggers=config.loggers,
        config=run.saved_config,
        name=run.saved_config.get("name"),
    )
    bar = progress_bar(config.steps, at.start_step, enabled=ctx.is_main, every_s=config.progress_every_s)
    metrics: dict[str, float] = {}
    interrupted = False
    try:
        with GracefulStop() as stop:
            batches = iter(loader) if run.sampler is not None else Stream(loader, at.consumed)
            while at.step < config.steps:
                lr, grad_norm = run.step(batches, input_key)
                scalars, images = _logged(at, config, ctx, device, lr, grad_norm, eval_fn, model)
                if scalars:
                    logger.log(at.step, scalars)
                    metrics.update(scalars)
                    if "train/loss" in scalars:
                        bar.set_postfix(loss=f"{scalars['train/loss']:.4g}")
                if images:
                    logger.log_images(at.step, images)
                bar.update(1)  # after the postfix: a progress line shows this step's loss
                interrupted = any_rank(stop.requested, ctx, device)
                if (
                    interrupted
                    or at.step == config.steps
                    or (config.checkpoint_every and at.step % config.checkpoint_every == 0)
                ):
                    run.checkpoint()
                if interrupted:
                    if ctx.is_main:
                        bar.write(
                            f"signal received: stopped after step {at.step}, checkpoint written to {run.ckpt_path}"
                        )
                    break
    finally:
        bar.close()
        logger.close()
    return TrainSummary(
        step=at.step, start_step=at.start_step, interrupted=interrupted, checkpoint=run.ckpt_path, metrics=metrics
    )


def _logged(
    at: _Position,
    config: TrainConfig,
    ctx: DistContext,
    device: torch.device,
    lr: float,
    grad_norm: float,
    eval_fn: EvalFn | None,
    model: nn.Module,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """What to log after this step, as (scalars, images): the training scalars every
    ``log_every`` steps (the loss averaged over the window and the ranks), the evaluation
    every ``eval_every`` (rank 0)."""
    scalars: dict[str, float] = {}
    images: dict[str, np.ndarray] = {}
    if at.step % config.log_every == 0 or at.step == config.steps:
        scalars = {
            "train/loss": all_reduce_mean(sum(at.window) / len(at.window), ctx, device),
            "train/lr": lr,
            "train/grad_norm": grad_norm,
            "train/seconds": at.clock,
        }
        at.window.clear()
    if eval_fn is not None and config.eval_every and at.step % config.eval_every == 0 and ctx.is_main:
        evaluated, images = _evaluate(eval_fn, model, at.step)
        scalars.update(evaluated)
    return scalars, images


def _evaluate(eval_fn: EvalFn, model: nn.Module, step: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Run ``eval_fn`` in eval mode without grads, leaving the training RNG streams untouched:
    its (scalars, images) under ``eval/<name>``."""
    rng = capture_rng_state()  # evaluation randomness must not shift the training trajectory
    try:
        with eval_mode(model), torch.no_grad():
            result = eval_fn(model, step)
    finally:
        restore_rng_state(rng)
    if not isinstance(result, Mapping):
        raise TypeError(f"eval_fn: expected a mapping of metric name -> number, got {type(result).__name__}")
    scalars, images = {}, {}
    for name, value in result.items():
        if isinstance(value, np.ndarray) and value.ndim == 3:
            images[f"eval/{name}"] = value  # checked by the logger: (H, W, 3) uint8
            continue
        try:
            scalars[f"eval/{name}"] = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"eval_fn: {name!r} is neither a number nor an (H, W, 3) image: {value!r}") from None
    return scalars, images
