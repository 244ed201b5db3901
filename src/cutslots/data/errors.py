"""Errors raised by the dataset readers.

A reader never skips or repairs bad data: a missing dataset raises ``FileNotFoundError`` with
the expected layout and where the data is published; data that does not match the published
format raises :class:`DatasetFormatError` naming the file (and record/frame where relevant).
"""

from __future__ import annotations

from pathlib import Path


class DatasetFormatError(ValueError):
    """A dataset file exists but does not match its published format."""


def missing_dataset(path: Path, layout: str, source: str) -> FileNotFoundError:
    """Build the error for a dataset path that does not exist.

    ``layout`` describes the expected files under the root, ``source`` where to download them.
    """
    return FileNotFoundError(f"dataset path not found: {path}\n  expected layout: {layout}\n  published at: {source}")
