"""Argument checks shared by every layer, with messages that name the argument.

Checks that need a full pass over a tensor (finiteness) are off by default: they cost a pass
plus a host sync on GPU on every forward. Turn them on while debugging with
``cutslots.checks.set_debug(True)`` or the environment variable ``CUTSLOTS_DEBUG=1``.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

__all__ = ["check_finite", "check_positive_float", "check_positive_int", "debug_enabled", "set_debug"]

_debug = os.environ.get("CUTSLOTS_DEBUG", "") not in ("", "0")


def set_debug(enabled: bool) -> None:
    """Run the full-pass checks (finiteness of layer inputs) on every forward, or stop."""
    global _debug
    _debug = bool(enabled)


def debug_enabled() -> bool:
    return _debug


def check_positive_int(name: str, value: object) -> None:
    """Raise unless ``value`` is an int >= 1 (a bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_nonnegative_int(name: str, value: object) -> None:
    """Raise unless ``value`` is an int >= 0 (a bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def check_positive_float(name: str, value: object) -> float:
    """``value`` as a float; raise unless it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_finite(name: str, tensor: Tensor) -> None:
    """In debug mode, raise if ``tensor`` holds NaN or inf; otherwise do nothing."""
    if _debug and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or inf values")
