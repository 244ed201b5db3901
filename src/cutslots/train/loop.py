"""The training loop: Adam + exponential decay, checkpoints, exact resume, signals, DDP.

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
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from cutslots.config import ExperimentConfig, TrainConfig, to_dict
from cutslots.experiments.common import eval_mode
from cutslots.train.checkpoint import (CHECKPOINT_NAME, capture_rng_state, load_checkpoint,
                                       restore_rng_state, save_checkpoint)
from cutslots.train.distributed import (DistContext, InfiniteSampler, all_gather_objects,
                                        all_reduce_mean, any_rank, barrier, context_from_env,
                                        resolve_device, setup_distributed, wrap_model)
from cutslots.train.logging import RunLogger, progress_bar

__all__ = ["CHECKPOINT_NAME", "EvalFn", "TrainSummary", "lr_factor", "make_scheduler",
           "seed_everything", "train"]


# eval_fn(model, step) -> {metric name: value}; runs on rank 0 in eval mode under no_grad.
EvalFn = Callable[[nn.Module, int], Mapping[str, float]]

# Train-config keys that shape the trajectory: a resume must not change them.
_TRAJECTORY_KEYS = ("batch_size", "lr", "decay_rate", "decay_steps", "warmup_steps",
                    "grad_clip", "seed")


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


def lr_factor(step: int, *, decay_rate: float, decay_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base lr for the update at (0-based) ``step``.

    Slot Attention's schedule: ``decay_rate ** (step / decay_steps)``, times a linear warmup
    ``(step + 1) / warmup_steps`` during the first ``warmup_steps`` updates (the +1 keeps the
    very first update from having lr 0).
    """
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warmup * decay_rate ** (step / decay_steps)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR applying :func:`lr_factor`; call ``step()`` once per optimiser step."""
    def factor(step: int) -> float:
        return lr_factor(step, decay_rate=config.decay_rate, decay_steps=config.decay_steps,
                         warmup_steps=config.warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _GracefulStop:
    """SIGINT/SIGTERM set ``requested`` so the loop can finish its step and checkpoint.

    A second signal raises KeyboardInterrupt at once (checkpoint writes are atomic, so this is
    safe). Handlers can only be installed from the main thread; elsewhere signals keep their
    default behaviour.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"second signal {signal.Signals(signum).name}")
        self.requested = True

    def __enter__(self) -> _GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _ignore_sigint(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which stops after its step."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _inputs(batch: Any, key: str, device: torch.device) -> torch.Tensor:
    """The model input ``batch[key]``: a float tensor ``(B, ..., 3, H, W)`` (images or frames)."""
    if not isinstance(batch, Mapping) or key not in batch:
        raise TypeError(f"train_dataset: items must be dicts with a {key!r} tensor, "
                        f"got batches of type {type(batch).__name__}")
    inputs = batch[key]
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 4 or inputs.shape[-3] != 3 \
            or not inputs.is_floating_point():
        raise TypeError(f"train_dataset: {key!r} must be a float tensor (..., 3, H, W), got "
                        f"batched {getattr(inputs, 'dtype', type(inputs).__name__)} "
                        f"{tuple(getattr(inputs, 'shape', ()))}")
    return inputs.to(device, non_blocking=True)


class _Stream:
    """Endless batches from an ``IterableDataset`` (it shards itself over ranks and workers):
    a new pass starts when one ends. Position = batches consumed, so a resume skips exactly
    those (reading them again: streams cannot seek)."""

    def __init__(self, loader: DataLoader, skip: int = 0) -> None:
        self.loader = loader
        self._it = iter(self.loader)
        for _ in range(skip):
            next(self)

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> Any:
        try:
            batch = next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            try:
                batch = next(self._it)
            except StopIteration:
                raise ValueError("train_dataset: the stream yielded no full batch for this "
                                 "rank (too few items for the per-rank batch size)") from None
        return batch


def _check_resume_compatible(saved: Mapping[str, Any] | None, config: TrainConfig,
                             path: Path) -> None:
    if saved is None or "train" not in saved:
        raise ValueError(f"{path}: holds no training config, so it cannot be resumed")
    now = to_dict(config)
    changed = [f"{k} ({saved['train'].get(k)!r} -> {now[k]!r})" for k in _TRAJECTORY_KEYS
               if saved["train"].get(k) != now[k]]
    if changed:
        raise ValueError(f"{path}: cannot resume exactly, these train settings changed: "
                         + ", ".join(changed))


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
    SIGINT/SIGTERM (after finishing the current step), plus ``scalars.csv`` and TensorBoard
    logs every ``log_every`` steps. ``resume=True`` continues from that checkpoint; without it
    an existing checkpoint is an error rather than being overwritten. ``experiment`` (the full
    config) is stored in the checkpoint when given. Under torchrun, trains with DDP: the global
    ``batch_size`` is split over ranks and only rank 0 writes files; the process group is
    joined on the first call and kept until the process exits.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected TrainConfig, got {type(config).__name__}")
    if experiment is not None and experiment.train != config:
        raise ValueError("experiment: its train section differs from config; pass the same "
                         "TrainConfig (experiment.train) so the checkpoint records what ran")
    if not callable(getattr(model, "loss", None)):
        raise TypeError(f"model: {type(model).__name__} has no loss(images, out) method")
    if not isinstance(train_dataset, IterableDataset) and len(train_dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("train_dataset: is empty")
    ctx = context_from_env()
    device = resolve_device(config.device, ctx)
    if config.batch_size % ctx.world_size:
        raise ValueError(f"batch_size: {config.batch_size} is not divisible by the "
                         f"{ctx.world_size} DDP ranks")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # the current device is where RNG states are captured
    setup_distributed(ctx, device)  # kept for the process's lifetime, reused by later calls
    return _run(model, train_dataset, config, eval_fn, resume, experiment, ctx, device, input_key)


def _run(model: nn.Module, dataset: Dataset[dict[str, torch.Tensor]], config: TrainConfig,
         eval_fn: EvalFn | None, resume: bool, experiment: ExperimentConfig | None,
         ctx: DistContext, device: torch.device, input_key: str) -> TrainSummary:
    out_dir = Path(config.out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"resume: no checkpoint to resume from at {ckpt_path}")
    if not resume and ckpt_path.exists():
        raise ValueError(f"out_dir: {out_dir} already holds a checkpoint; pass resume=True to "
                         f"continue it or choose another out_dir")
    per_rank_batch = config.batch_size // ctx.world_size
    streaming = isinstance(dataset, IterableDataset)
    size = 0 if streaming else len(dataset)  # type: ignore[arg-type]

    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = make_scheduler(optimizer, config)
    if resume:
        ckpt = load_checkpoint(ckpt_path, model, optimizer=optimizer, scheduler=scheduler,
                               restore_rng=True, rank=ctx.rank)
        _check_resume_compatible(ckpt.config, config, ckpt_path)
        sampler = None if streaming else InfiniteSampler.from_state(
            ckpt.extra["sampler"], size=size, rank=ctx.rank, world_size=ctx.world_size)
        consumed = int(ckpt.extra.get("stream_batches", 0))
        start_step = ckpt.step
        if start_step > config.steps:
            raise ValueError(f"steps: {config.steps} is fewer than the {start_step} steps "
                             f"already done by {ckpt_path}")
        window: list[float] = list(ckpt.extra["loss_windows"][ctx.rank])
        clock = float(ckpt.extra.get("train_seconds", 0.0))
    else:
        seed_everything(config.seed + ctx.rank)  # distinct streams per rank (e.g. slot noise)
        sampler = None if streaming else InfiniteSampler(size, seed=config.seed, rank=ctx.rank,
                                                         world_size=ctx.world_size)
        consumed = 0
        start_step = 0
        window = []  # this rank's losses since the last log line (saved, so logs resume too)
        clock = 0.0  # seconds spent in training steps (not evaluation or checkpoints), all runs
    net = wrap_model(model, ctx, device)
    loader = DataLoader(dataset, batch_size=per_rank_batch, sampler=sampler, drop_last=streaming,
                        num_workers=config.num_workers, pin_memory=device.type == "cuda",
                        worker_init_fn=_ignore_sigint if config.num_workers else None,
                        # Own generator: creating the iterator must not draw from the global
                        # RNG, or a resumed run would diverge from an uninterrupted one.
                        generator=torch.Generator().manual_seed(config.seed))
    saved_config = to_dict(experiment) if experiment is not None else {"train": to_dict(config)}

    def checkpoint(step: int) -> None:
        # Collective (every rank): rank 0 stores each rank's RNG state and loss window.
        states = all_gather_objects((capture_rng_state(), list(window)), ctx)
        if ctx.is_main:
            extra: dict[str, Any] = {"loss_windows": [w for _, w in states], "train_seconds": clock}
            if sampler is not None:
                extra["sampler"] = sampler.state_dict(step * per_rank_batch)
            else:
                extra["stream_batches"] = step - start_step + consumed
            save_checkpoint(ckpt_path, model, step=step, optimizer=optimizer,
                            scheduler=scheduler, config=saved_config,
                            rng_states=[r for r, _ in states], extra=extra)
        barrier(ctx)  # no rank goes on (or returns) before the checkpoint is on disk

    logger = RunLogger(out_dir, start_step, enabled=ctx.is_main)
    bar = progress_bar(config.steps, start_step, enabled=ctx.is_main)
    metrics: dict[str, float] = {}
    step, interrupted = start_step, False
    try:
        with _GracefulStop() as stop:
            batches = _Stream(loader, consumed) if streaming else iter(loader)
            while step < config.steps:
                started = time.perf_counter()
                images = _inputs(next(batches), input_key, device)
                out = net(images)
                if not isinstance(out, Mapping) or "recon" not in out:
                    raise TypeError(f"model: forward must return a dict with 'recon', got "
                                    f"{type(out).__name__}")
                loss = model.loss(images, out)
                if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                    raise TypeError(f"model.loss: expected a scalar tensor, got {loss!r}")
                loss_value = loss.item()
                if not math.isfinite(loss_value):  # stop before the update corrupts weights
                    raise FloatingPointError(f"loss is {loss_value} at step {step + 1}")
                lr = optimizer.param_groups[0]["lr"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                else:
                    grad_norm = nn.utils.get_total_norm(
                        [p.grad for p in model.parameters() if p.grad is not None])
                optimizer.step()
                scheduler.step()
                step += 1
                window.append(loss_value)
                bar.update(1)
                clock += time.perf_counter() - started

                if step % config.log_every == 0 or step == config.steps:
                    scalars = {"train/loss": all_reduce_mean(sum(window) / len(window), ctx,
                                                             device),
                               "train/lr": lr, "train/grad_norm": float(grad_norm),
                               "train/seconds": clock}
                    logger.log(step, scalars)
                    metrics.update(scalars)
                    bar.set_postfix(loss=f"{scalars['train/loss']:.4g}")
                    window.clear()
                if eval_fn is not None and config.eval_every and step % config.eval_every == 0 \
                        and ctx.is_main:
                    scalars = _evaluate(eval_fn, model, step)
                    logger.log(step, scalars)
                    metrics.update(scalars)
                interrupted = any_rank(stop.requested, ctx, device)
                if interrupted or step == config.steps or (
                        config.checkpoint_every and step % config.checkpoint_every == 0):
                    checkpoint(step)
                if interrupted:
                    if ctx.is_main:
                        bar.write(f"signal received: stopped after step {step}, checkpoint "
                                  f"written to {ckpt_path}")
                    break
    finally:
        bar.close()
        logger.close()
    return TrainSummary(step=step, start_step=start_step, interrupted=interrupted,
                        checkpoint=ckpt_path, metrics=metrics)


def _evaluate(eval_fn: EvalFn, model: nn.Module, step: int) -> dict[str, float]:
    """Run ``eval_fn`` in eval mode without grads, leaving the training RNG streams untouched."""
    rng = capture_rng_state()  # evaluation randomness must not shift the training trajectory
    try:
        with eval_mode(model), torch.no_grad():
            result = eval_fn(model, step)
    finally:
        restore_rng_state(rng)
    if not isinstance(result, Mapping):
        raise TypeError(f"eval_fn: expected a mapping of metric name -> number, got "
                        f"{type(result).__name__}")
    scalars = {}
    for name, value in result.items():
        try:
            scalars[f"eval/{name}"] = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"eval_fn: metric {name!r} is not a number: {value!r}") from None
    return scalars
