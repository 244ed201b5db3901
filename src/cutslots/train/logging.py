"""Run logging: a long-format CSV of scalars and TensorBoard.

Both loggers are resume-safe: a run resumed from a checkpoint at step ``s`` first drops whatever
was logged after ``s`` by the interrupted run (those steps are about to be redone), so every step
appears exactly once.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

__all__ = ["CsvLogger", "RunLogger"]

_HEADER = ["step", "name", "value"]


def _check_scalars(step: int, scalars: Mapping[str, float]) -> None:
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise ValueError(f"step: expected an int >= 1, got {step!r}")
    for name, value in scalars.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"scalar name: expected a non-empty string, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"scalar {name!r}: expected a real number, got {type(value).__name__}")


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

    def close(self) -> None:
        self._file.close()


class RunLogger:
    """CSV (``<out_dir>/scalars.csv``) plus TensorBoard (``<out_dir>/tb``), or nothing at all.

    ``enabled=False`` (every DDP rank but 0) makes all methods no-ops and touches no file.
    """

    def __init__(self, out_dir: str | os.PathLike[str], start_step: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        if not enabled:
            return
        out_dir = Path(out_dir)
        self.csv = CsvLogger(out_dir / "scalars.csv", start_step)
        # purge_step hides events the interrupted run wrote after the checkpoint.
        self.tb = SummaryWriter(str(out_dir / "tb"), purge_step=start_step + 1 if start_step > 0 else None)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        self.csv.log(step, scalars)
        for name, value in scalars.items():
            self.tb.add_scalar(name, value, step)
        self.tb.flush()

    def close(self) -> None:
        if self.enabled:
            self.csv.close()
            self.tb.close()
