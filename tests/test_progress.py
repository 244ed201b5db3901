"""Progress display: tqdm on a terminal, plain timed lines (no carriage returns) elsewhere."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from tqdm import tqdm

from cutslots.config import TrainConfig
from cutslots.train.loop import train
from cutslots.train.progress import LineProgress, progress_bar
from tiny_training import TinyAutoencoder, TinyScenes


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_every_n_seconds_with_rate_and_eta() -> None:
    out, clock = io.StringIO(), FakeClock()
    bar = LineProgress(total=10, initial=2, every_s=10, file=out, clock=clock)  # a resumed run
    bar.set_postfix(loss="0.5")
    for now in (5, 10):  # steps 3 and 4: a line once 10 s have passed
        clock.now = now
        bar.update(1)
    bar.set_postfix(loss="0.25")
    for now in (12, 14):  # steps 5 and 6
        clock.now = now
        bar.update(1)
    clock.now = 15
    bar.close()
    bar.close()  # nothing new: no second last line
    assert out.getvalue() == (
        "train: step 2/10 (20%)\n"
        "train: step 4/10 (40%), loss 0.5, 0.2 steps/s, ETA 0:00:30\n"  # 2 steps in 10 s, 6 to go
        "train: step 6/10 (60%), loss 0.25, 0.4 steps/s, ETA 0:00:10\n"  # 2 steps in 5 s, 4 to go
    )


def test_eta_in_hours_and_a_close_right_after_a_line_adds_nothing() -> None:
    out, clock = io.StringIO(), FakeClock()
    bar = LineProgress(total=7300, every_s=1, file=out, clock=clock)
    clock.now = 1
    bar.update(1)
    bar.close()
    assert out.getvalue().splitlines() == ["train: step 0/7300 (0%)", "train: step 1/7300 (0%), 1 steps/s, ETA 2:01:39"]


def test_terminal_gets_tqdm_and_disabled_shows_nothing() -> None:
    terminal = Terminal()
    bar = progress_bar(5, file=terminal)
    assert isinstance(bar, tqdm)
    bar.update(1)
    bar.close()
    assert "\r" in terminal.getvalue()  # tqdm redraws in place

    log = io.StringIO()
    assert isinstance(progress_bar(5, file=log), LineProgress)
    silent = progress_bar(5, enabled=False, file=log)
    silent.update(1)
    silent.close()
    assert log.getvalue() == "train: step 0/5 (0%)\n"  # only the enabled reporter's first line


def test_training_into_a_log_writes_plain_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = TrainConfig(steps=6, batch_size=4, log_every=3, warmup_steps=0, out_dir=str(tmp_path), device="cpu")
    train(TinyAutoencoder(), TinyScenes(), config)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("train: ")]
    assert lines[0] == "train: step 0/6 (0%)"
    assert re.fullmatch(r"train: step 6/6 \(100%\), loss [0-9.e-]+, [0-9.e+]+ steps/s, ETA 0:00:00", lines[-1])


def test_a_bad_interval_is_named() -> None:
    with pytest.raises(ValueError, match="every_s: expected seconds > 0, got 0"):
        LineProgress(total=3, every_s=0, file=io.StringIO())
