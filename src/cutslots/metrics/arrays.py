"""The array inputs every metric accepts: numpy arrays or torch tensors, read as numpy."""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def as_array(x: object, name: str) -> np.ndarray:
    """``x`` as a numpy array: a tensor is detached and copied to the CPU, an array is returned
    as is; anything else raises TypeError naming the argument ``name``."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
