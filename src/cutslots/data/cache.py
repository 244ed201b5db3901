"""On-disk cache of generated datasets: one ``.npz`` per parameter set, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CACHE_FORMAT_VERSION = 1
_KEY_ENTRY = "_cache_key"  # the full parameter key stored inside the file, checked on load


def cache_path(cache_dir: str | os.PathLike[str], prefix: str, params: dict[str, object]) -> Path:
    """File for ``params`` (JSON-serialisable scalars): ``cache_dir/prefix-<hash>.npz``."""
    return Path(cache_dir) / f"{prefix}-{hashlib.sha256(_key(params).encode()).hexdigest()[:16]}.npz"


def _key(params: dict[str, object]) -> str:
    return json.dumps({"cache_format": CACHE_FORMAT_VERSION, **params}, sort_keys=True)


def load_or_build(
    cache_dir: str | os.PathLike[str],
    prefix: str,
    params: dict[str, object],
    build: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Load the arrays cached for ``params``, or ``build()`` them and cache them.

    The file is written to a temporary name in ``cache_dir`` and renamed into place, so a
    concurrent reader never sees a partial file. A file whose stored key differs from
    ``params`` or that cannot be read raises ValueError naming it (it is never overwritten).
    """
    directory = Path(cache_dir)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"cache_dir {str(directory)!r} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    path = cache_path(directory, prefix, params)
    key = _key(params)
    if path.exists():
        return _load(path, key)
    arrays = build()
    if _KEY_ENTRY in arrays:
        raise ValueError(f"build() returned the reserved array name {_KEY_ENTRY!r}")
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            entries: dict[str, Any] = {**arrays, _KEY_ENTRY: np.array(key)}  # Any: savez's stub types **kwds
            np.savez(f, **entries)
        os.replace(tmp_name, path)
    except BaseException:
        os.unlink(tmp_name)
        raise
    return arrays


def _load(path: Path, key: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"cache file {str(path)!r} is unreadable ({err}); delete it to regenerate") from err
    stored = arrays.pop(_KEY_ENTRY, None)
    if stored is None or str(stored) != key:
        raise ValueError(f"cache file {str(path)!r} was written for other parameters; delete it to regenerate")
    return arrays
