"""Run logging through one small interface, :class:`Logger`: scalars and images per step.

Backends (``train.loggers``): ``csv`` (a long-format ``scalars.csv``; it keeps no images: the
run's figures are its PNGs), ``tensorboard`` (``tb/``: scalars, images, the config as hparams)
and ``wandb`` (Weights & Biases: scalars, images, the config; the optional ``[wandb]`` extra).
:class:`RunLogger` sends everything to the chosen ones.

All are resume-safe: a run resumed from a checkpoint at step ``s`` first drops whatever the CSV
and TensorBoard hold after ``s`` (those steps are about to be redone), so every step appears
once. W&B cannot drop steps: a resumed W&B run continues the same run id and W&B ignores
the redone steps, which an exact resume (see :mod:`cutslots.train.loop`) makes identical anyway.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, get_args

import numpy as np
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from cutslots.config.experiment import LoggerName

__all__ = ["LOGGERS", "CsvLogger", "Logger", "RunLogger", "TensorBoardLogger", "WandbLogger", "takes_images"]

LOGGERS: tuple[str, ...] = get_args(LoggerName)  # csv, tensorboard, wandb
_HEADER = ["step", "name", "value"]


def takes_images(loggers: Sequence[str]) -> bool:
    """Whether any of ``loggers`` keeps images (the CSV does not), so they are worth drawing."""
    return any(kind in ("tensorboard", "wandb") for kind in loggers)


def _check_scalars(step: int, scalars: Mapping[str, float]) -> None:
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise ValueError(f"step: expected an int >= 1, got {step!r}")
    for name, value in scalars.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"scalar name: expected a non-empty string, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"scalar {name!r}: expected a real number, got {type(value).__name__}")


def _check_images(step: int, images: Mapping[str, np.ndarray]) -> None:
    _check_scalars(step, {})
    for name, image in images.items():
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise TypeError(f"image {name!r}: expected an (H, W, 3) uint8 RGB array, got {got}")


class Logger(Protocol):
    """A logging backend. ``images`` are (H, W, 3) uint8 RGB arrays (e.g. from
    :func:`cutslots.plots.figure_image`)."""

    def log(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def log_images(self, step: int, images: Mapping[str, np.ndarray]) -> None: ...

    def close(self) -> None: ...


class CsvLogger:
    """Scalars as rows ``step,name,value`` (long format, so new names may appear at any step).

    ``start_step`` is the step training (re)starts from: rows with a larger step are removed
    from an existing file before appending. Each row is flushed as it is written.
    """

    def __init__(self, path: str | os.PathLike[str], start_step: int = 0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = self._rows_up_to(start_step) if self.path.exists() else []
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:  # rewrite, then swap atomically
            writer = csv.writer(f)
            writer.writerow(_HEADER)
            writer.writerows(kept)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._file)

    def _rows_up_to(self, start_step: int) -> list[list[str]]:
        with open(self.path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0] != _HEADER:
            raise ValueError(
                f"{self.path}: not a cutslots scalar log (expected header "
                f"{','.join(_HEADER)}); move it away or choose another out_dir"
            )
        kept = []
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != len(_HEADER) or not row[0].isdigit():
                raise ValueError(f"{self.path}, line {line}: malformed row {row!r}")
            if int(row[0]) <= start_step:
                kept.append(row)
        return kept

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        """Append one row per scalar; ``repr`` keeps floats exact."""
        _check_scalars(step, scalars)
        self._writer.writerows([step, name, repr(float(v))] for name, v in scalars.items())
        self._file.flush()

    def log_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Images have no place in a CSV."""

    def close(self) -> None:
        self._file.close()


def _flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, float | int | str]:
    """A nested config as TensorBoard hparams: dotted keys; numbers stay numbers, anything
    else (bools, None, lists) becomes its text, which TensorBoard shows as written."""
    flat: dict[str, float | int | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat_hparams(value, f"{name}."))
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


class TensorBoardLogger:
    """Scalars and images in the event files of ``log_dir``; ``config`` (a nested mapping, e.g.
    :func:`cutslots.config.to_dict` of the experiment) as hparams, beside the training loss."""

    def __init__(self, log_dir: str | os.PathLike[str], start_step: int = 0, config: Mapping[str, Any] | None = None):
        # purge_step hides events the interrupted run wrote after the checkpoint.
        self.writer = SummaryWriter(str(log_dir), purge_step=start_step + 1 if start_step > 0 else None)
        if config is not None:
            # The hparams plugin's experiment and session records, in this run's own event file
            # (SummaryWriter.add_hparams would make a separate run in a subfolder).
            experiment, session_start, _ = hparams(_flat_hparams(config), {"train/loss": 0.0})
            events = self.writer._get_file_writer()  # what add_hparams writes through, too
            events.add_summary(experiment)
            events.add_summary(session_start)
            self.writer.flush()

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def log_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        for name, image in images.items():
            self.writer.add_image(name, image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A Weights & Biases run: scalars, images and ``config``, named ``name``.

    W&B's environment variables apply (``WANDB_MODE=offline``, ``WANDB_PROJECT``,
    ``WANDB_DIR``, ...); without them the project is ``cutslots`` and the run's files go to
    ``<out_dir>/wandb``. The run id is kept in ``<out_dir>/wandb_id``, so a resumed training
    (``start_step > 0``) continues the same W&B run.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        start_step: int = 0,
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        try:
            import wandb
        except ImportError:
            raise ValueError("train.loggers: 'wandb' needs the wandb package: pip install 'cutslots[wandb]'") from None
        self._wandb = wandb
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        id_path = out_dir / "wandb_id"
        resumed = start_step > 0 and id_path.is_file()
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "cutslots"),
            dir=os.environ.get("WANDB_DIR", str(out_dir)),
            name=name,
            id=id_path.read_text(encoding="utf-8").strip() if resumed else None,  # None: a new id
            resume="allow",
            config=dict(config or {}),
        )
        id_path.write_text(self.run.id + "\n", encoding="utf-8")

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log(dict(scalars), step=step)

    def log_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        self.run.log({name: self._wandb.Image(image) for name, image in images.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


class RunLogger:
    """The backends named in ``loggers`` (see :data:`LOGGERS`), all fed the same scalars and
    images: ``<out_dir>/scalars.csv``, ``<out_dir>/tb`` and a W&B run; ``config`` (the
    experiment as a nested mapping) goes to TensorBoard's hparams and W&B's run config.

    ``enabled=False`` (every DDP rank but 0) makes all methods no-ops and touches no file.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        start_step: int = 0,
        enabled: bool = True,
        loggers: Sequence[str] = ("csv", "tensorboard"),
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(loggers, str) or any(kind not in LOGGERS for kind in loggers):
            raise ValueError(f"loggers: expected a list of {', '.join(LOGGERS)}, got {loggers!r}")
        self.backends: list[Logger] = []
        if not enabled:
            return
        out_dir = Path(out_dir)
        if "wandb" in loggers:  # first: without the wandb package, fail before writing any file
            self.backends.append(WandbLogger(out_dir, start_step, config, name))
        if "csv" in loggers:
            self.backends.append(CsvLogger(out_dir / "scalars.csv", start_step))
        if "tensorboard" in loggers:
            self.backends.append(TensorBoardLogger(out_dir / "tb", start_step, config))

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        _check_scalars(step, scalars)
        for backend in self.backends:
            backend.log(step, scalars)

    def log_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        _check_images(step, images)
        for backend in self.backends:
            backend.log_images(step, images)

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
