"""Generic regularized equality-constrained QP layer (paper §3.1, eqs. 3-6, App. B).

Convention used throughout cutslots::

    minimize  1/2 * gamma * |z|^2 + c . z    subject to  A z = b

The paper writes the regulariser as ``gamma_paper * sum z^2``; that is this problem with
``gamma = 2 * gamma_paper`` (see :func:`gamma_from_paper`).

From the KKT system, with ``M = A A^T`` factorized once::

    z      = -(1/gamma) (c - A^T M^{-1} (A c + gamma b))  =  -(1/gamma) P c + z0
    dL/dc  = -(1/gamma) P dL/dz,      P = I - A^T M^{-1} A,   z0 = A^T M^{-1} b

``P`` is the orthogonal projector onto the null space of ``A``; ``z0`` the minimum-norm
solution of ``A z = b``. Forward and backward each cost one batched solve with the factor.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

from cutslots.qp.autocast import HALF_DTYPES, float32_under_autocast
from cutslots.qp.factor import (
    Backend,
    CholmodFactor,
    GramFactorization,
    SuperLUFactor,
    TriangularFactor,
    WoodburyFactor,
    factorize_gram,
)


def gamma_from_paper(gamma_paper: float) -> float:
    """Convert the paper's ``gamma * sum z^2`` coefficient to this package's ``gamma``."""
    return 2.0 * gamma_paper


def check_gamma(gamma: float) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not np.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    return float(gamma)


def check_float_tensor(name: str, x: Any, trailing: tuple[int | None, ...]) -> torch.Tensor:
    """Validate a float32/float64 tensor whose last dims match ``trailing`` (None: any).

    Inside ``torch.autocast`` the layers see float32 copies of half inputs
    (:mod:`cutslots.qp.autocast`), so a half tensor reaching this check came from outside it.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        hint = " (bfloat16/float16 only inside torch.autocast, which solves in float32)"
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}{hint if x.dtype in HALF_DTYPES else ''}")
    nd = len(trailing)
    if x.dim() < nd or any(t is not None and s != t for s, t in zip(x.shape[-nd:], trailing)):
        want = ", ".join("*" if t is None else str(t) for t in trailing)
        raise ValueError(f"{name} must have shape (..., {want}), got {tuple(x.shape)}")
    # One reduction instead of an element-wise isfinite pass (this sits on the hot path);
    # NaN/inf always reach the sum, and the full check rules out overflow of huge values.
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return x


class _GramSolver:
    """Applies ``P`` and ``z0`` on host or device for one factorization."""

    def __init__(self, A: sp.csr_matrix, b: np.ndarray, fact: GramFactorization) -> None:
        self.A = A
        self.At = A.T.tocsr()
        self.fact = fact
        self.z0 = self.At @ fact.factor.solve(b)
        self._cupy: dict[str, _CupySolver] = {}
        self._warned_cpu_fallback = False

    def project(self, v: torch.Tensor) -> torch.Tensor:
        """``P v`` for ``v: (B, n)``, returned in ``v``'s dtype and device."""
        if v.is_cuda:
            solver = self._device_solver(v.device)
            if solver is not None:
                return solver.project(v)
        x = v.detach().to("cpu", torch.float64).numpy().T  # (n, B)
        out = x - self.At @ self.fact.factor.solve(self.A @ x)
        return torch.from_numpy(np.ascontiguousarray(out.T)).to(v.device, v.dtype)

    def _device_solver(self, device: torch.device) -> _CupySolver | None:
        key = str(device)
        if key not in self._cupy:
            try:
                self._cupy[key] = _CupySolver(self.A, self.fact, device)
            except ImportError:
                if not self._warned_cpu_fallback:
                    warnings.warn(
                        "CuPy is not installed: EqualityQP solves CUDA inputs on the CPU and copies "
                        "the result back (pip install 'cutslots[gpu]' for GPU triangular solves)",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    self._warned_cpu_fallback = True
                return None
        return self._cupy[key]


class _CupySolver:
    """GPU path: the factor's triangular form as CuPy CSR matrices, cuSPARSE triangular solves."""

    def __init__(self, A: sp.csr_matrix, fact: GramFactorization, device: torch.device) -> None:
        import cupy
        import cupyx.scipy.sparse as csp

        self.cupy = cupy
        factor = fact.factor
        woodbury = factor if isinstance(factor, WoodburyFactor) else None
        base = woodbury.base if woodbury is not None else factor
        assert isinstance(base, (SuperLUFactor, CholmodFactor, TriangularFactor)), type(base)
        tri = base.triangular()
        with cupy.cuda.Device(device.index or 0):
            self.A, self.At = csp.csr_matrix(A), csp.csr_matrix(A.T.tocsr())
            self.L, self.U = csp.csr_matrix(tri.L), csp.csr_matrix(tri.U)
            self.pre, self.post = cupy.asarray(tri.pre), cupy.asarray(tri.post)
            self.unit_lower = tri.unit_lower
            self.correction = None
            if woodbury is not None:
                # M^{-1} x = y - (W cap^{-1}) U^T y with y = S^{-1} x (see WoodburyFactor).
                self.correction = (cupy.asarray(woodbury.correction), cupy.asarray(woodbury.U))

    def solve(self, rhs: Any) -> Any:
        from cupyx.scipy.sparse.linalg import spsolve_triangular

        y = spsolve_triangular(self.L, rhs[self.pre], lower=True, unit_diagonal=self.unit_lower)
        x = spsolve_triangular(self.U, y, lower=False)[self.post]
        if self.correction is not None:
            wc, u = self.correction
            x = x - wc @ (u.T @ x)
        return x

    def project(self, v: torch.Tensor) -> torch.Tensor:
        x = self.cupy.from_dlpack(v.detach().to(torch.float64).T.contiguous())
        out = x - self.At @ self.solve(self.A @ x)
        return torch.from_dlpack(out).T.to(v.dtype).contiguous()


class _EqualityQPFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, c: torch.Tensor, solver: _GramSolver, gamma: float) -> torch.Tensor:
        ctx.solver, ctx.gamma = solver, gamma
        z0 = torch.as_tensor(solver.z0, dtype=c.dtype, device=c.device)
        return z0 - solver.project(c) / gamma

    @staticmethod
    def backward(ctx: Any, grad_z: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return -ctx.solver.project(grad_z) / ctx.gamma, None, None


class EqualityQP(torch.nn.Module):
    """Differentiable ``argmin_z 1/2 gamma |z|^2 + c.z  s.t.  A z = b`` for a batch of costs.

    ``A`` (sparse, full row rank) and ``b`` are fixed; ``M = A A^T`` is factorized once here.

    Args:
        A: ``(m, n)`` scipy sparse constraint matrix.
        b: ``(m,)`` right-hand side.
        gamma: regularisation weight (> 0), this package's convention (module docstring).
        backend: ``"scipy"`` (SuperLU), ``"cholmod"`` (scikit-sparse) or ``"auto"``.
        cache_dir: cache for factorizations slower than a second (``False`` disables it).
        dense_column_threshold: see :func:`cutslots.qp.factor.factorize_gram`.

    Forward: ``c: (B, n)`` or ``(n,)`` float32/float64 on CPU or CUDA -> ``z`` of the same
    shape, dtype and device. CUDA inputs use CuPy when installed, else the CPU (with a warning).
    Inside ``torch.autocast`` bfloat16/float16 ``c`` is solved in float32 and ``z`` cast back
    (:mod:`cutslots.qp.autocast`); outside it half inputs are rejected.
    """

    def __init__(
        self,
        A: sp.spmatrix,
        b: np.ndarray | torch.Tensor,
        gamma: float,
        *,
        backend: Backend = "auto",
        cache_dir: str | os.PathLike[str] | Literal[False] | None = None,
        dense_column_threshold: int | None = None,
    ) -> None:
        super().__init__()
        if not sp.issparse(A):
            raise TypeError(f"A must be a scipy.sparse matrix, got {type(A).__name__}")
        if A.ndim != 2 or 0 in A.shape:
            raise ValueError(f"A must be a non-empty 2-D matrix, got shape {A.shape}")
        A = sp.csr_matrix(A, dtype=np.float64)
        if not np.isfinite(A.data).all():
            raise ValueError("A contains NaN or inf values")
        b_np = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
        b_np = b_np.astype(np.float64)
        if b_np.shape != (A.shape[0],):
            raise ValueError(f"b must have shape ({A.shape[0]},) to match A, got {b_np.shape}")
        if not np.isfinite(b_np).all():
            raise ValueError("b contains NaN or inf values")
        self.gamma = check_gamma(gamma)
        self.num_constraints, self.num_variables = A.shape
        fact = factorize_gram(A, backend, dense_column_threshold, cache_dir)
        self.factorization = fact
        self._solver = _GramSolver(A, b_np, fact)

    @float32_under_autocast
    def forward(self, c: torch.Tensor) -> torch.Tensor:
        check_float_tensor("c", c, (self.num_variables,))
        if c.dim() > 2:
            raise ValueError(
                f"c must have shape (B, {self.num_variables}) or ({self.num_variables},), got {tuple(c.shape)}"
            )
        squeeze = c.dim() == 1
        z = _EqualityQPFunction.apply(c.reshape(-1, self.num_variables), self._solver, self.gamma)
        return z[0] if squeeze else z

    def extra_repr(self) -> str:
        return (
            f"m={self.num_constraints}, n={self.num_variables}, gamma={self.gamma}, "
            f"backend={self.factorization.backend}, dense_columns={len(self.factorization.dense_columns)}"
        )
