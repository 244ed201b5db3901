"""The QP layers under ``torch.autocast``: they solve in float32 and hand back the input dtype.

Autocast runs convolutions and matrix products in bfloat16/float16 (8 or 11 mantissa bits),
far too coarse for the solves' tolerances and for the closed form's DCTs. Inside an autocast
region of the inputs' device, :func:`float32_under_autocast` makes a layer's ``forward``

- cast its bfloat16/float16 tensor arguments to float32 (float32/float64 ones stay as they are),
- run with autocast disabled, so every product inside the solve keeps that dtype,
- cast its result back to the inputs' (promoted) dtype; autograd carries the gradients back
  through both casts, so they reach the inputs in the inputs' dtype.

A float32 or float64 call therefore computes exactly what it computes outside autocast.
Outside autocast nothing changes: a bfloat16/float16 input is rejected, as ever, since a
caller who builds half tensors on purpose should choose the cast themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

import torch

__all__ = ["HALF_DTYPES", "float32_under_autocast"]

HALF_DTYPES = (torch.float16, torch.bfloat16)

F = TypeVar("F", bound=Callable[..., Any])


class _Castable(Protocol):
    """A layer result other than a tensor (e.g. ``CutSolution``) that can change its dtype."""

    def to(self, dtype: torch.dtype) -> Any: ...


def _up(value: Any) -> Any:
    return value.float() if isinstance(value, torch.Tensor) and value.dtype in HALF_DTYPES else value


def float32_under_autocast(forward: F) -> F:
    """Decorate a QP layer's ``forward`` as the module docstring says; its result is a tensor
    or has a ``to(dtype)`` method."""

    @functools.wraps(forward)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.is_floating_point()]
        device = tensors[0].device.type if tensors else None
        # A device without autocast (meta) cannot even be asked whether it is on.
        if device is None or not torch.amp.is_autocast_available(device) or not torch.is_autocast_enabled(device):
            return forward(*args, **kwargs)
        dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
        with torch.autocast(device, enabled=False):
            out = forward(*map(_up, args), **{k: _up(v) for k, v in kwargs.items()})
        return out if dtype not in HALF_DTYPES else cast(_Castable, out).to(dtype)

    return cast(F, wrapped)
