"""Stopping a run cleanly: the first SIGINT/SIGTERM asks the loop to finish its step and checkpoint."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["GracefulStop", "ignore_sigint"]


class GracefulStop:
    """SIGINT/SIGTERM set ``requested`` so the loop can finish its step and checkpoint.

    A second signal raises KeyboardInterrupt at once (checkpoint writes are atomic, so this is
    safe). Handlers can only be installed from the main thread; elsewhere signals keep their
    default behaviour.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"second signal {signal.Signals(signum).name}")
        self.requested = True

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def ignore_sigint(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which stops after its step."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
