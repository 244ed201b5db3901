"""Plumbing shared by the experiments: the main-rank check, run loading, seeding, eval mode."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cutslots.config import ExperimentConfig, experiment_from_dict
from cutslots.train.checkpoint import checkpoint_config
from cutslots.train.distributed import context_from_env
from cutslots.train.loop import eval_mode, seed_everything

__all__ = ["eval_mode", "is_main", "load_run", "seed_everything"]


def is_main() -> bool:
    """Whether this process writes reports: the main rank of a DDP job, or the only process."""
    return context_from_env().is_main


def load_run(path: str | Path, data_overrides: Mapping[str, Any] | None = None) -> tuple[Path, ExperimentConfig]:
    """The checkpoint file of a run (``checkpoint.pt`` or its folder) and its config, with
    ``data_overrides`` replacing fields of the data section (e.g. a dataset root that moved)."""
    checkpoint, saved = checkpoint_config(path)
    if data_overrides:
        saved = {**saved, "data": {**saved.get("data", {}), **data_overrides}}
    return checkpoint, experiment_from_dict(saved, source=str(checkpoint))
