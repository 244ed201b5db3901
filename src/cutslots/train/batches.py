"""Feeding the loop: the data loader, endless streams, and the checked model input of a batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from cutslots.config import TrainConfig
from cutslots.train.distributed import InfiniteSampler
from cutslots.train.signals import ignore_sigint

__all__ = ["Stream", "batch_inputs", "make_loader"]


def batch_inputs(batch: Any, key: str, device: torch.device) -> torch.Tensor:
    """The model input ``batch[key]``: a float tensor ``(B, ..., 3, H, W)`` (images or frames)."""
    if not isinstance(batch, Mapping) or key not in batch:
        raise TypeError(
            f"train_dataset: items must be dicts with a {key!r} tensor, got batches of type {type(batch).__name__}"
        )
    inputs = batch[key]
    if (
        not isinstance(inputs, torch.Tensor)
        or inputs.ndim < 4
        or inputs.shape[-3] != 3
        or not inputs.is_floating_point()
    ):
        raise TypeError(
            f"train_dataset: {key!r} must be a float tensor (..., 3, H, W), got "
            f"batched {getattr(inputs, 'dtype', type(inputs).__name__)} "
            f"{tuple(getattr(inputs, 'shape', ()))}"
        )
    return inputs.to(device, non_blocking=True)


class Stream:
    """Endless batches from an ``IterableDataset`` (it shards itself over ranks and workers):
    a new pass starts when one ends. Position = batches consumed, so a resume skips exactly
    those (reading them again: streams cannot seek)."""

    def __init__(self, loader: DataLoader, skip: int = 0) -> None:
        self.loader = loader
        self._it = iter(self.loader)
        for _ in range(skip):
            next(self)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Any:
        try:
            batch = next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            try:
                batch = next(self._it)
            except StopIteration:
                raise ValueError(
                    "train_dataset: the stream yielded no full batch for this "
                    "rank (too few items for the per-rank batch size)"
                ) from None
        return batch


def make_loader(
    dataset: Dataset[dict[str, torch.Tensor]],
    sampler: InfiniteSampler | None,
    config: TrainConfig,
    per_rank_batch: int,
    device: torch.device,
) -> DataLoader:
    """Batches of ``per_rank_batch`` drawn by ``sampler`` (a map-style dataset) or in the dataset's
    own order (``sampler=None``: a stream, whose last partial batch is dropped)."""
    return DataLoader(
        dataset,
        batch_size=per_rank_batch,
        sampler=sampler,
        drop_last=sampler is None,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=ignore_sigint if config.num_workers else None,
        # Own generator: creating the iterator must not draw from the global
        # RNG, or a resumed run would diverge from an uninterrupted one.
        generator=torch.Generator().manual_seed(config.seed),
    )
