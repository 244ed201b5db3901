"""Training progress that reads well everywhere: a tqdm bar on a terminal, plain lines elsewhere.

A log that is not a terminal (CI, ``nohup``, a cluster job's file) would collect tqdm's
carriage-return redraws on one endless line. There, :class:`LineProgress` writes one line
when training starts and then one every ``every_s`` seconds, and a last one at the end::

    train: step 1200/5000 (24%)
    train: step 1330/5000 (26%), loss 0.0123, 4.33 steps/s, ETA 0:14:07

The rate is that of the steps since the previous line; the ETA assumes it holds.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from tqdm import tqdm

__all__ = ["LineProgress", "Progress", "progress_bar"]


class Progress(Protocol):
    """What the training loop needs of a progress display (tqdm's own method names)."""

    def update(self, n: int = 1) -> Any: ...

    def set_postfix(self, **stats: Any) -> Any: ...

    def write(self, text: str) -> Any: ...

    def close(self) -> Any: ...


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class LineProgress:
    """Progress over ``total`` steps as plain lines on ``file``, at most one every ``every_s``
    seconds of ``clock`` (plus the first and the last), each ending in a newline only."""

    def __init__(
        self,
        total: int,
        initial: int = 0,
        every_s: float = 30.0,
        file: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        desc: str = "train",
    ) -> None:
        if not (isinstance(every_s, (int, float)) and math.isfinite(every_s) and every_s > 0):
            raise ValueError(f"every_s: expected seconds > 0, got {every_s!r}")
        self.total, self.step, self.every_s, self.desc = total, initial, every_s, desc
        self.file = sys.stderr if file is None else file
        self.clock = clock
        self.stats: dict[str, str] = {}
        self._shown_step, self._shown_at = initial, clock()
        self._closed = False
        self._line(rate=None)

    def update(self, n: int = 1) -> None:
        self.step += n
        if self.clock() - self._shown_at >= self.every_s:
            self._report()

    def set_postfix(self, **stats: Any) -> None:
        """Values shown on the following lines, as ``name value`` (e.g. ``loss 0.0123``)."""
        self.stats = {name: str(value) for name, value in stats.items()}

    def write(self, text: str) -> None:
        print(text, file=self.file, flush=True)

    def close(self) -> None:
        """Report the last steps (if any since the previous line); later calls do nothing."""
        if not self._closed and self.step != self._shown_step:
            self._report()
        self._closed = True

    def _report(self) -> None:
        now = self.clock()
        elapsed = now - self._shown_at
        self._line(rate=(self.step - self._shown_step) / elapsed if elapsed > 0 else None)
        self._shown_step, self._shown_at = self.step, now

    def _line(self, rate: float | None) -> None:
        parts = [f"{self.desc}: step {self.step}/{self.total} ({100 * self.step // self.total}%)"]
        parts += [f"{name} {value}" for name, value in self.stats.items()]
        if rate is not None and rate > 0:
            parts += [f"{rate:.3g} steps/s", f"ETA {_duration((self.total - self.step) / rate)}"]
        self.write(", ".join(parts))


def progress_bar(
    total: int, initial: int = 0, enabled: bool = True, every_s: float = 30.0, file: TextIO | None = None
) -> Progress:
    """Progress over training steps, starting at ``initial`` when resuming: a tqdm bar when
    ``file`` (default: stderr) is a terminal, else :class:`LineProgress` lines every
    ``every_s`` seconds; ``enabled=False`` (DDP ranks but 0) shows nothing."""
    stream = sys.stderr if file is None else file
    if enabled and not stream.isatty():
        return LineProgress(total, initial, every_s, stream)
    return tqdm(
        total=total, initial=initial, disable=not enabled, file=stream, unit="step", dynamic_ncols=True, desc="train"
    )
