"""Bipartite matching relaxed to regularized equality-constrained QPs (paper §3.2, App. C).

Given costs ``cost: (B, n, m)`` (e.g. ``-<s_i, t_j>`` for slots), ``MatchingQP`` returns the
edge variables ``x: (B, n, m)`` of

    minimize 1/2 gamma |z|^2 + sum_ij cost_ij x_ij   subject to the form's constraints.

Forms:

``"perfect"`` (the paper's eq. 7; square, n = m)
    ``sum_j x_ij = 1`` for every i and ``sum_i x_ij = 1`` for every j. The two sets of
    constraints share one redundant row (both sum to n), so the last column constraint is
    dropped to keep ``A`` of full row rank; the solution is the same.
``"assignment"`` (any n, m)
    ``sum_j x_ij + s_i = 1`` and ``sum_i x_ij + s'_j = 1`` with slacks ``s, s'`` (regularised
    as well): each node is matched at most once in the LP.

There is no ``x >= 0``: as everywhere in the paper, the relaxation keeps equality constraints
only, so entries can be negative; downstream layers (``SlotMatcher``) normalise them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from cutslots.qp.autocast import float32_under_autocast
from cutslots.qp.equality_qp import EqualityQP, check_float_tensor

MatchingForm = Literal["perfect", "assignment"]
MATCHING_FORMS: tuple[str, ...] = ("perfect", "assignment")


def matching_constraints(n: int, m: int, form: MatchingForm) -> tuple[sp.csr_matrix, np.ndarray]:
    """``A, b`` of the matching QP; variables ``[x (row-major n*m), slacks]``."""
    for name, value in (("n", n), ("m", m)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if form not in MATCHING_FORMS:
        raise ValueError(f"form must be one of {MATCHING_FORMS}, got {form!r}")
    if form == "perfect" and n != m:
        raise ValueError(f"form='perfect' needs a square problem, got n={n}, m={m}")
    # Row sums: A_rows @ x = sum_j x_ij; column sums: A_cols @ x = sum_i x_ij.
    rows = sp.kron(sp.identity(n), np.ones((1, m)))
    cols = sp.kron(np.ones((1, n)), sp.identity(m))
    if form == "perfect":
        A = sp.vstack([rows, cols.tocsr()[: m - 1]]) if n > 1 else rows
    else:
        slack = sp.identity(n + m)
        A = sp.hstack([sp.vstack([rows, cols]), slack])
    A = sp.csr_matrix(A)
    return A, np.ones(A.shape[0])


class MatchingQP(torch.nn.Module):
    """Differentiable relaxed bipartite matching: ``cost: (B, n, m) -> x: (B, n, m)``.

    Args:
        n: size of the first side.
        m: size of the second side (default ``n``).
        gamma: regulariser, convention ``1/2 gamma |z|^2`` (the paper's gamma times 2).
        form: ``"perfect"`` (paper eq. 7) or ``"assignment"`` (module docstring).

    Inside ``torch.autocast`` bfloat16/float16 costs are solved in float32 and ``x`` cast back
    to their dtype (:mod:`cutslots.qp.autocast`); outside it they are rejected.
    """

    def __init__(self, n: int, m: int | None = None, *, gamma: float = 1.0, form: MatchingForm = "perfect") -> None:
        super().__init__()
        m = n if m is None else m
        A, b = matching_constraints(n, m, form)
        self.n, self.m, self.form = n, m, form
        self.qp = EqualityQP(A, b, gamma, backend="scipy", cache_dir=False)
        self.gamma = self.qp.gamma

    @float32_under_autocast
    def forward(self, cost: torch.Tensor) -> torch.Tensor:
        check_float_tensor("cost", cost, (self.n, self.m))
        if cost.dim() != 3:
            raise ValueError(f"cost must have shape (B, {self.n}, {self.m}), got {tuple(cost.shape)}")
        batch, nm = cost.shape[0], self.n * self.m
        c = cost.reshape(batch, nm)
        if self.qp.num_variables > nm:
            c = torch.cat([c, c.new_zeros(batch, self.qp.num_variables - nm)], dim=1)
        return self.qp(c)[:, :nm].reshape(batch, self.n, self.m)

    def extra_repr(self) -> str:
        return f"n={self.n}, m={self.m}, gamma={self.gamma}, form={self.form}"
