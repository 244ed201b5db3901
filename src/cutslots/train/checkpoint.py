"""Atomic training checkpoints: model, optimiser, scheduler, step, RNG states and config.

A checkpoint is written to a temporary file in the destination directory, fsynced and then
``os.replace``-d over the destination, so a crash or kill mid-write leaves the previous
checkpoint intact. Files are read with ``torch.load(weights_only=True)``: everything stored is
plain tensors/containers (RNG states included), so loading never runs pickled code.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "Checkpoint",
    "capture_rng_state",
    "load_checkpoint",
    "model_fingerprint",
    "restore_rng_state",
    "save_checkpoint",
]

_FORMAT = "cutslots.checkpoint"
_VERSION = 1


CHECKPOINT_NAME = "checkpoint.pt"  # the file a run directory holds


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`load_checkpoint` returns besides the states it loads in place."""

    path: Path
    step: int
    config: dict[str, Any] | None
    extra: dict[str, Any]
    rng_states: list[dict[str, Any]]  # one per rank that wrote it


def _unwrap(model: nn.Module) -> nn.Module:
    # A DistributedDataParallel wrapper prefixes every key with "module."; store the bare model.
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def model_fingerprint(model: nn.Module) -> dict[str, Any]:
    """Class name plus the name and shape of every state-dict entry (parameters and buffers)."""
    model = _unwrap(model)
    return {
        # The bare class name: a model class run as __main__ or imported must match itself.
        "class": type(model).__qualname__,
        "params": {name: list(t.shape) for name, t in model.state_dict().items()},
    }


def _fingerprint_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    diffs = []
    if saved["class"] != current["class"]:
        diffs.append(f"class {saved['class']} in the checkpoint vs {current['class']} here")
    old, new = saved["params"], current["params"]
    if missing := [k for k in new if k not in old]:
        diffs.append(f"missing from the checkpoint: {', '.join(missing)}")
    if unexpected := [k for k in old if k not in new]:
        diffs.append(f"not in the model: {', '.join(unexpected)}")
    if reshaped := [
        f"{k} {tuple(old[k])} vs {tuple(new[k])}" for k in new if k in old and list(old[k]) != list(new[k])
    ]:
        diffs.append(f"shape differs (checkpoint vs model): {', '.join(reshaped)}")
    return diffs


def capture_rng_state() -> dict[str, Any]:
    """The torch, numpy and python RNG states, plus the current CUDA device's if CUDA is in use.

    Only the current device's CUDA state is taken: a DDP rank works on its own GPU, and
    querying every device would create a CUDA context on each of them from every rank.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        # numpy's key array is stored as ints so the file stays loadable with weights_only.
        "numpy": (kind, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _check_restorable(state: Mapping[str, Any]) -> None:
    if "cuda" in state and not torch.cuda.is_available():
        raise ValueError(
            "rng state: holds a CUDA RNG state but CUDA is not available here, so it cannot be restored exactly"
        )


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    _check_restorable(state)
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])  # onto the current device
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary readable file
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())  # data on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:  # includes KeyboardInterrupt: never leave the temp file behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # persist the rename itself
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    config: Mapping[str, Any] | None = None,
    rng_states: list[dict[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Atomically write a checkpoint to ``path``.

    ``rng_states`` defaults to this process's state (one entry); distributed training passes one
    entry per rank. ``config`` must be plain YAML-like data (see ``cutslots.config.to_dict``);
    ``extra`` holds loop state such as the sampler position.
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step: expected an int >= 0, got {step!r}")
    model = _unwrap(model)
    payload = {
        "format": _FORMAT,
        "version": _VERSION,
        "step": step,
        "fingerprint": model_fingerprint(model),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_states if rng_states is not None else [capture_rng_state()],
        "config": dict(config) if config is not None else None,
        "extra": dict(extra or {}),
    }
    path = Path(path)
    _atomic_torch_save(payload, path)
    return path


def checkpoint_config(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """The experiment config stored in a checkpoint (``checkpoint.pt`` or its run folder).

    Returns the checkpoint's file path and the config as plain data. Raises FileNotFoundError
    for a missing file and ValueError for a file that is not a checkpoint or holds no config.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # random bytes, a foreign pickle, a torn file, ...
        raise ValueError(f"{path} is not a cutslots checkpoint (torch.load failed: {err})") from err
    config = raw.get("config") if isinstance(raw, dict) else None
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"{path} holds no experiment config: it was not written by `cutslots train`")
    return path, config


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    restore_rng: bool = False,
    rank: int = 0,
) -> Checkpoint:
    """Load a checkpoint into ``model`` (and optimiser/scheduler when given), in place.

    With ``restore_rng`` the RNG states saved for ``rank`` are restored, so training continues
    exactly. Raises FileNotFoundError for a missing file and ValueError for a file that is not a
    cutslots checkpoint or that was written for a different model (naming the differing params).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file: torn, foreign pickle, random bytes, ...
        raise ValueError(f"{path} is not a cutslots checkpoint (torch.load failed: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a cutslots checkpoint (no {_FORMAT!r} format marker)")
    if payload.get("version") != _VERSION:
        raise ValueError(
            f"{path}: checkpoint version {payload.get('version')!r} is not supported (expected {_VERSION})"
        )
    model = _unwrap(model)
    if diffs := _fingerprint_differences(payload["fingerprint"], model_fingerprint(model)):
        raise ValueError(f"{path} was saved from a different model: " + "; ".join(diffs))
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None and payload[name] is None:
            raise ValueError(f"{path} holds no {name} state, but a {name} was passed to restore")
    rng_states = payload["rng"]
    if restore_rng:  # validate before touching any state, so a failed load changes nothing
        if not 0 <= rank < len(rng_states):
            raise ValueError(f"{path} holds RNG states for {len(rng_states)} rank(s); cannot restore rank {rank}")
        try:
            _check_restorable(rng_states[rank])
        except ValueError as err:
            raise ValueError(f"{path}: {err}; load with restore_rng=False instead") from None

    model.load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(payload["scheduler"])
    if restore_rng:
        restore_rng_state(rng_states[rank])
    return Checkpoint(
        path=path, step=payload["step"], config=payload["config"], extra=payload["extra"], rng_states=rng_states
    )
