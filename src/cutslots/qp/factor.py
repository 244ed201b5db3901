"""Factorizations of the Gram matrix ``M = A A^T`` of a sparse constraint matrix.

The generic QP layer needs ``M^{-1} x`` for many right-hand sides, with one factorization
reused for the whole training run. Three things make that fast and robust:

- **Dense columns.** A column of ``A`` touching many rows (the terminals of a cut graph touch
  every pixel's edge row) turns ``M`` into a matrix with dense blocks and destroys the
  sparsity of any factor. Such columns ``U`` are split off, ``M = S + U U^T`` with ``S`` the
  Gram matrix of the remaining columns, ``S`` is factorized sparsely and the rank-r term is
  handled by the Woodbury identity. (For the 64x64 cut this turns a 26 s factorization with
  70 M nonzeros into 0.08 s.)
- **Backends.** SciPy's SuperLU with a symmetric fill-reducing ordering (always available),
  CHOLMOD through scikit-sparse (optional extra ``cutslots[cholmod]``).
- **Disk cache.** A factorization that took longer than ``cache_threshold_s`` is saved as its
  triangular factors, keyed by a hash of ``A``, and reloaded instead of recomputed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl

log = logging.getLogger(__name__)

Backend = Literal["auto", "scipy", "cholmod"]
BACKENDS: tuple[str, ...] = ("auto", "scipy", "cholmod")
_CACHE_FORMAT = 1
# Relative pivot size under which M is declared singular (dependent rows of A).
_SINGULAR_RTOL = 1e-12


class DependentRowsError(ValueError):
    """``A`` has linearly dependent rows, so ``A A^T`` is singular."""


class Factor(Protocol):
    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """Return ``M^{-1} rhs`` for ``rhs: (m,)`` or ``(m, k)`` float64."""
        ...


def cholmod_available() -> bool:
    try:
        import sksparse.cholmod  # noqa: F401
    except ImportError:
        return False
    return True


def _dependent_rows(detail: str) -> DependentRowsError:
    return DependentRowsError(
        f"A has linearly dependent rows (A A^T is singular): remove redundant constraints from A ({detail})"
    )


class SuperLUFactor:
    """SciPy SuperLU of a symmetric positive definite matrix, symmetric ordering."""

    def __init__(self, S: sp.csc_matrix) -> None:
        try:
            self.lu = spl.splu(
                S,
                permc_spec="MMD_AT_PLUS_A",
                diag_pivot_thresh=0.0,
                options={"SymmetricMode": True},
            )
        except RuntimeError as err:  # "Factor is exactly singular"
            raise _dependent_rows(str(err)) from err
        pivots = np.abs(self.lu.U.diagonal())
        if pivots.min() <= _SINGULAR_RTOL * pivots.max():
            raise _dependent_rows(f"pivot ratio {pivots.min() / pivots.max():.1e}")

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return self.lu.solve(rhs)

    def triangular(self) -> TriangularFactor:
        # Pr S Pc = L U with y[perm_r] = b and x = w[perm_c].
        return TriangularFactor(self.lu.L.tocsr(), self.lu.U.tocsr(), np.argsort(self.lu.perm_r), self.lu.perm_c, True)


class CholmodFactor:
    """CHOLMOD Cholesky (scikit-sparse) of a symmetric positive definite matrix."""

    def __init__(self, S: sp.csc_matrix) -> None:
        from sksparse.cholmod import CholmodNotPositiveDefiniteError, cholesky

        try:
            self.factor = cholesky(S)
        except CholmodNotPositiveDefiniteError as err:
            raise _dependent_rows(str(err)) from err
        diag = self.factor.D()
        if diag.min() <= _SINGULAR_RTOL * diag.max():
            raise _dependent_rows(f"pivot ratio {diag.min() / diag.max():.1e}")

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return self.factor(rhs)

    def triangular(self) -> TriangularFactor:
        # P S P^T = L L^T: y = b[P], x[P] = w.
        L = self.factor.L().tocsr()
        perm = self.factor.P()
        return TriangularFactor(L, L.T.tocsr(), perm, np.argsort(perm), False)


@dataclass
class TriangularFactor:
    """Explicit triangular factors: ``M^{-1} b = (U^{-1} L^{-1} b[pre])[post]``.

    The portable form of a factorization: it is what the disk cache stores, and what the GPU
    path moves to the device for CuPy's sparse triangular solves.
    """

    L: sp.csr_matrix
    U: sp.csr_matrix
    pre: np.ndarray
    post: np.ndarray
    unit_lower: bool

    def triangular(self) -> TriangularFactor:
        return self

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        y = spl.spsolve_triangular(self.L, rhs[self.pre], lower=True, unit_diagonal=self.unit_lower)
        w = spl.spsolve_triangular(self.U, y, lower=False)
        return w[self.post]

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename) so a crash never leaves a partial cache."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            arrays: dict[str, Any] = {  # Any: savez's stub types **kwds as its bool flags
                "format": np.array(_CACHE_FORMAT),
                "pre": self.pre,
                "post": self.post,
                "unit_lower": np.array(self.unit_lower),
            }
            for name, mat in (("L", self.L), ("U", self.U)):
                arrays[f"{name}_data"], arrays[f"{name}_indices"] = mat.data, mat.indices
                arrays[f"{name}_indptr"], arrays[f"{name}_shape"] = mat.indptr, np.array(mat.shape)
            np.savez(fh, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> TriangularFactor:
        with np.load(path) as f:
            if int(f["format"]) != _CACHE_FORMAT:
                raise ValueError(f"factor cache {path} has an unknown format; delete it")
            mats = [
                sp.csr_matrix(
                    (f[f"{n}_data"], f[f"{n}_indices"], f[f"{n}_indptr"]),
                    shape=tuple(f[f"{n}_shape"]),
                )
                for n in ("L", "U")
            ]
            return cls(mats[0], mats[1], f["pre"], f["post"], bool(f["unit_lower"]))


# A factorization of S itself, with explicit triangular factors to hand to a cache or a GPU.
DirectFactor = SuperLUFactor | CholmodFactor | TriangularFactor


class WoodburyFactor:
    """``(S + U diag(signs) U^T)^{-1}`` from a factor of ``S`` and a dense ``U: (m, r)``.

    ``signs`` are +1 for split-off dense columns and -1 for the unit columns that undo the
    placeholder diagonal put on rows left empty by the split (see :func:`factorize_gram`).
    """

    def __init__(self, base: DirectFactor, U: np.ndarray, signs: np.ndarray) -> None:
        self.base = base
        self.U = U
        W = base.solve(U)  # S^{-1} U, (m, r)
        cap = np.diag(signs.astype(np.float64)) + U.T @ W
        sv = np.linalg.svd(cap, compute_uv=False)
        # det(M) = det(S) det(cap) det(diag(signs)): a singular cap means dependent rows.
        if sv.min() <= _SINGULAR_RTOL * sv.max():
            raise _dependent_rows(f"capacitance singular-value ratio {sv.min() / sv.max():.1e}")
        self.correction = W @ np.linalg.inv(cap)  # (m, r); cap is tiny and well scaled

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        y = self.base.solve(rhs)
        return y - self.correction @ (self.U.T @ y)


def dense_columns(A: sp.csc_matrix, threshold: int | None = None) -> np.ndarray:
    """Indices of columns with more than ``threshold`` nonzeros (default ``10 sqrt(m)``, >= 50)."""
    m = A.shape[0]
    if threshold is None:
        threshold = max(50, int(10 * np.sqrt(m)))
    return np.nonzero(np.diff(A.indptr) > threshold)[0]


def default_cache_dir() -> Path:
    """Where factorizations are cached: ``$CUTSLOTS_CACHE_DIR``, else ``cutslots/factors`` in
    ``$XDG_CACHE_HOME`` (default ``~/.cache``)."""
    env = os.environ.get("CUTSLOTS_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cutslots" / "factors"


def matrix_hash(A: sp.spmatrix, *extra: object) -> str:
    A = sp.csr_matrix(A)
    A.sort_indices()
    h = hashlib.sha256()
    h.update(np.array(A.shape, dtype=np.int64).tobytes())
    for arr in (A.indptr.astype(np.int64), A.indices.astype(np.int64), A.data.astype(np.float64)):
        h.update(arr.tobytes())
    h.update(repr(extra).encode())
    return h.hexdigest()[:32]


def _factor_sparse(S: sp.csc_matrix, backend: str) -> DirectFactor:
    if backend == "cholmod":
        return CholmodFactor(S)
    return SuperLUFactor(S)


def resolve_backend(backend: str) -> Literal["scipy", "cholmod"]:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cholmod" and not cholmod_available():
        raise ImportError(
            "backend='cholmod' needs scikit-sparse: install libsuitesparse-dev and "
            "pip install 'cutslots[cholmod]' (scikit-sparse<0.5)"
        )
    if backend == "auto":
        return "cholmod" if cholmod_available() else "scipy"
    return "cholmod" if backend == "cholmod" else "scipy"


@dataclass
class GramFactorization:
    """A factorization of ``A A^T`` plus what was learned building it."""

    factor: Factor
    backend: str
    dense_columns: np.ndarray
    seconds: float
    from_cache: bool


def factorize_gram(
    A: sp.spmatrix,
    backend: Backend = "auto",
    dense_column_threshold: int | None = None,
    cache_dir: str | os.PathLike[str] | Literal[False] | None = None,
    cache_threshold_s: float = 1.0,
) -> GramFactorization:
    """Factorize ``M = A A^T`` once; raises :class:`DependentRowsError` if it is singular.

    Args:
        A: ``(m, n)`` scipy sparse matrix of full row rank.
        backend: ``"scipy"`` (SuperLU), ``"cholmod"`` or ``"auto"`` (CHOLMOD when installed).
        dense_column_threshold: columns with more nonzeros go to a Woodbury correction.
        cache_dir: where slow factorizations are cached (``None``: :func:`default_cache_dir`,
            ``False``: no cache).
        cache_threshold_s: factorizations slower than this are written to the cache.
    """
    backend = resolve_backend(backend)
    A = sp.csc_matrix(A, dtype=np.float64)
    dense = dense_columns(A, dense_column_threshold)
    keep = np.setdiff1d(np.arange(A.shape[1]), dense)
    A_sparse = A[:, keep]
    U = A[:, dense].toarray()
    # Rows whose only entries were in dense columns (e.g. a terminal row p_s - p_t = b0) leave
    # S singular: give them a unit diagonal in S and subtract it again in the low-rank term.
    empty = np.nonzero(np.diff(sp.csr_matrix(A_sparse).indptr) == 0)[0] if dense.size else dense
    placeholder = sp.csc_matrix((np.ones(empty.size), (empty, empty)), shape=(A.shape[0],) * 2)
    E = placeholder[:, empty].toarray()
    signs = np.concatenate([np.ones(dense.size), -np.ones(empty.size)])

    key = matrix_hash(A, backend, dense.tolist())
    cache_path = None if cache_dir is False else Path(cache_dir or default_cache_dir()) / f"{key}.npz"
    start = time.perf_counter()
    base: DirectFactor
    if cache_path is not None and cache_path.exists():
        base = TriangularFactor.load(cache_path)
        log.info("loaded cached factorization of A A^T from %s", cache_path)
        from_cache = True
    else:
        S = (A_sparse @ A_sparse.T + placeholder).tocsc()
        try:
            base = _factor_sparse(S, backend)
        except DependentRowsError:
            if not dense.size:
                raise
            # Removing the dense columns made rows dependent: factor the full Gram matrix.
            log.info("A A^T without dense columns is singular; factorizing it whole")
            return _whole(A, backend, start)
        from_cache = False
        elapsed = time.perf_counter() - start
        if cache_path is not None and elapsed > cache_threshold_s:
            base.triangular().save(cache_path)
            log.info(
                "factorization of A A^T took %.1f s; cached at %s (reused next time)",
                elapsed,
                cache_path,
            )
    factor: Factor = WoodburyFactor(base, np.hstack([U, E]), signs) if dense.size else base
    return GramFactorization(factor, backend, dense, time.perf_counter() - start, from_cache)


def _whole(A: sp.csc_matrix, backend: str, start: float) -> GramFactorization:
    factor = _factor_sparse((A @ A.T).tocsc(), backend)
    return GramFactorization(factor, backend, np.array([], dtype=np.int64), time.perf_counter() - start, False)
