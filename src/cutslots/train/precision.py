"""Mixed precision and gradient accumulation of the training loop (``train.precision``, ``train.accumulate``).

``precision: bf16 | fp16`` runs the model's forward pass and loss under ``torch.autocast`` on
the run's device; the QP layers opt out and solve in float32 (:mod:`cutslots.qp.autocast`).
Backward runs outside autocast, as torch advises. float16 gradients underflow without loss
scaling, so fp16 adds a ``torch.amp.GradScaler`` (its state is checkpointed, so a resume stays
exact); bfloat16 has float32's range and needs none.

``accumulate: n`` sums the gradients of n micro-batches of ``batch_size`` items per optimiser
step, each loss scaled by 1/n: for a batch-mean loss and a model without batch-coupled layers
(cutslots' models have no BatchNorm) that is the gradient of one batch of ``n * batch_size``.
Under DDP the gradients are all-reduced once, in the final micro-batch's backward (tested
with a comm hook that counts the bucket reductions).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

__all__ = ["Precision"]

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _check_supported(precision: str, dtype: torch.dtype, device: torch.device) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # autocast warns and turns itself off for a dtype it lacks
            with torch.autocast(device.type, dtype=dtype):
                supported, reason = torch.is_autocast_enabled(device.type), "unsupported dtype"
    except RuntimeError as err:  # e.g. bfloat16 on a GPU without it
        supported, reason = False, str(err)
    if not supported:
        raise ValueError(f"precision: {precision!r} is not supported by torch.autocast on {device} ({reason})")


class Precision:
    """The autocast region, loss scaler and micro-batch loop of one run."""

    def __init__(self, precision: str, accumulate: int, device: torch.device) -> None:
        self.dtype = _AUTOCAST_DTYPES.get(precision)
        if self.dtype is not None:
            _check_supported(precision, self.dtype, device)
        self.device_type, self.accumulate = device.type, accumulate
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def autocast(self) -> AbstractContextManager[Any]:
        return nullcontext() if self.dtype is None else torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, net: nn.Module, loss: Callable[[], tuple[torch.Tensor, float]]) -> float:
        """Accumulate into the gradients the backward of ``loss() / accumulate`` for each of
        ``accumulate`` calls (``loss()``: the next micro-batch's loss and its value); returns
        the mean loss value. ``net``: the model, DDP-wrapped under torchrun."""
        values = []
        for i in range(self.accumulate):
            final = i == self.accumulate - 1
            no_sync = isinstance(net, nn.parallel.DistributedDataParallel) and not final
            with net.no_sync() if no_sync else nullcontext():  # type: ignore[operator]
                with self.autocast():
                    tensor, value = loss()
                self.scaler.scale(tensor / self.accumulate).backward()
            values.append(value)
        return sum(values) / len(values)

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler.is_enabled() else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is not None:
            self.scaler.load_state_dict(state)
