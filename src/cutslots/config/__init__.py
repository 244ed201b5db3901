"""Typed configs read from YAML: the mechanism (:mod:`cutslots.config.core`) and the experiment schema.

- :mod:`cutslots.config.core`: :class:`Section` (a frozen pydantic model), :func:`load_config`
  with dotted overrides, :class:`ConfigError` naming the key and the file or override.
- :mod:`cutslots.config.experiment`: the model / data / train sections of ``cutslots train``.

Other entry points declare their own sections next to their code (the Cora matching and
cut-fidelity experiments, the QP benchmark) and read them with the same :func:`load_config`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from cutslots.config.core import (
    ConfigError,
    Section,
    config_from_dict,
    load_config,
    parse_override,
    save_config,
    to_dict,
    validate,
    with_overrides,
)
from cutslots.config.experiment import (
    CutGroupingConfig,
    DataConfig,
    DecoderConfig,
    EncoderConfig,
    ExperimentConfig,
    GroupingConfig,
    MatchingConfig,
    ModelConfig,
    OptimizerConfig,
    RandomWalkerGroupingConfig,
    SlotAttentionGroupingConfig,
    TrainConfig,
    upgrade_legacy,
)

__all__ = [
    "ConfigError",
    "CutGroupingConfig",
    "DataConfig",
    "DecoderConfig",
    "EncoderConfig",
    "ExperimentConfig",
    "GroupingConfig",
    "MatchingConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RandomWalkerGroupingConfig",
    "Section",
    "SlotAttentionGroupingConfig",
    "TrainConfig",
    "config_from_dict",
    "experiment_from_dict",
    "load_config",
    "load_experiment",
    "packaged_configs",
    "parse_override",
    "resolve_config",
    "save_config",
    "to_dict",
    "upgrade_legacy",
    "validate",
    "with_overrides",
]


def packaged_configs() -> dict[str, Path]:
    """The YAML configs shipped with the package (``cutslots/configs``), by name."""
    folder = Path(str(resources.files("cutslots") / "configs"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_config(name_or_path: str | os.PathLike[str]) -> Path:
    """A config file: ``name_or_path`` itself when it exists, else the packaged config of that
    name (``demo``, ``clevrtex``, ...). Raises FileNotFoundError listing the packaged names."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = packaged_configs()
    if str(name_or_path) in packaged:
        return packaged[str(name_or_path)]
    raise FileNotFoundError(f"config file not found: {path} (packaged configs: {', '.join(packaged)})")


def load_experiment(path: str | os.PathLike[str], overrides: Sequence[str] | None = None) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from YAML (a path or a packaged name, older layouts
    upgraded), then ``overrides``."""
    return load_config(resolve_config(path), overrides, schema=ExperimentConfig, upgrade=upgrade_legacy)


def experiment_from_dict(raw: Any, source: str = "<dict>") -> ExperimentConfig:
    """An :class:`ExperimentConfig` from plain data such as a checkpoint's copy (older layouts
    upgraded)."""
    if isinstance(raw, dict):
        raw = upgrade_legacy(raw, source)
    return config_from_dict(raw, schema=ExperimentConfig, source=source)
