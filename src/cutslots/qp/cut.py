"""``GridCutQP``: the relaxed grid s-t min cut as a differentiable layer (paper, eq. 2).

Two engines solve the same QP:

``"closed_form"`` (default for the paper form)
    the exact DCT solution of :mod:`cutslots.qp.cut_closed_form`: no factorization, batched
    matrix products, CPU or CUDA, exact autograd.
``"sparse"``
    the generic :class:`cutslots.qp.equality_qp.EqualityQP` on the sparse constraint matrix
    of :mod:`cutslots.qp.grid_graph` (the paper's own method); needed for the
    ``"released"`` form, whose graph the DCT does not diagonalise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from cutslots.qp.autocast import float32_under_autocast
from cutslots.qp.cut_closed_form import solve_grid_cut_closed_form
from cutslots.qp.equality_qp import EqualityQP, check_float_tensor, check_gamma
from cutslots.qp.factor import Backend
from cutslots.qp.grid_graph import CutForm, build_grid_cut_graph, check_form, check_grid_size

Engine = Literal["auto", "closed_form", "sparse"]
ENGINES: tuple[str, ...] = ("auto", "closed_form", "sparse")


class CutSolution:
    """Solution of a batch of grid cut QPs.

    Attributes:
        p: ``(B, H, W)`` pixel vertex variables. Larger ``p`` leans to the source side, but the
            relaxation does not bound them by ``p_s`` and ``p_t`` (nor keep ``p_s > p_t`` when
            the terminal weights are large; see ``docs/cut-fidelity.md``).
        p_s, p_t: ``(B,)`` terminal vertex variables.
        d: ``(B, 6, H, W)`` edge variables in the channel order of ``EDGE_CHANNELS``
            (0 where the edge does not exist). With the closed-form engine they are computed
            on first access, so models that read only ``p`` never pay for them.
    """

    def __init__(
        self,
        p: torch.Tensor,
        p_s: torch.Tensor,
        p_t: torch.Tensor,
        d: torch.Tensor | Callable[[], torch.Tensor],
    ) -> None:
        self.p, self.p_s, self.p_t = p, p_s, p_t
        self._d = d

    @property
    def d(self) -> torch.Tensor:
        if callable(self._d):
            self._d = self._d()
        return self._d

    def to(self, dtype: torch.dtype) -> CutSolution:
        """The solution cast to ``dtype`` (differentiably); a lazy ``d`` stays lazy."""
        d = self._d.to(dtype) if isinstance(self._d, torch.Tensor) else lambda: self.d.to(dtype)
        return CutSolution(self.p.to(dtype), self.p_s.to(dtype), self.p_t.to(dtype), d)


class GridCutQP(torch.nn.Module):
    """Relaxed s-t cut on an ``H x W`` grid: ``weights: (B, 6, H, W) -> CutSolution``.

    Args:
        height: grid height (>= 1).
        width: grid width (>= 1).
        gamma: regulariser in the convention ``1/2 gamma |z|^2`` (paper's gamma times 2).
        b0: terminal constraint value (default 1 for ``"paper"``, 10 for ``"released"``).
        form: ``"paper"`` (eq. 2) or ``"released"`` (authors' code); see ``grid_graph``.
        engine: ``"closed_form"``, ``"sparse"`` or ``"auto"`` (closed form when the form allows).
        backend: passed to the sparse engine's factorization.
        cache_dir: passed to the sparse engine's factorization.

    Inside ``torch.autocast`` bfloat16/float16 weights are solved in float32 and the solution
    cast back to their dtype (:mod:`cutslots.qp.autocast`); outside it they are rejected.
    """

    _flat_valid: torch.Tensor  # (E,) flat indices of the grid's valid edge channels (sparse engine)
    _d_cols: torch.Tensor  # (E,) their columns in the QP's variable vector

    def __init__(
        self,
        height: int,
        width: int,
        gamma: float = 1.0,
        *,
        b0: float | None = None,
        form: CutForm = "paper",
        engine: Engine = "auto",
        backend: Backend = "auto",
        cache_dir: str | os.PathLike[str] | Literal[False] | None = None,
    ) -> None:
        super().__init__()
        check_grid_size(height, width)
        check_form(form)
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine == "auto":
            engine = "closed_form" if form == "paper" else "sparse"
        if engine == "closed_form" and form != "paper":
            raise ValueError(f"engine='closed_form' solves form='paper' only; form={form!r} needs engine='sparse'")
        self.height, self.width, self.form, self.engine = height, width, form, engine
        self.gamma = check_gamma(gamma)
        self.graph = build_grid_cut_graph(height, width, form, b0)
        self.b0 = self.graph.b0
        self.qp: EqualityQP | None = None
        if engine == "sparse":
            self.qp = EqualityQP(self.graph.A, self.graph.b, self.gamma, backend=backend, cache_dir=cache_dir)
            valid = self.graph.edge_index >= 0
            self.register_buffer("_flat_valid", torch.from_numpy(np.flatnonzero(valid)), persistent=False)
            d_cols = self.graph.d_offset() + self.graph.edge_index[valid]
            self.register_buffer("_d_cols", torch.from_numpy(d_cols), persistent=False)

    @float32_under_autocast
    def forward(self, weights: torch.Tensor) -> CutSolution:
        check_float_tensor("weights", weights, (6, self.height, self.width))
        if weights.dim() != 4:
            raise ValueError(f"weights must have shape (B, 6, {self.height}, {self.width}), got {tuple(weights.shape)}")
        if self.engine == "closed_form":
            return CutSolution(*solve_grid_cut_closed_form(weights, self.gamma, self.b0))
        return self._solve_sparse(weights)

    def _solve_sparse(self, weights: torch.Tensor) -> CutSolution:
        assert self.qp is not None
        batch, n_pix = weights.shape[0], self.graph.num_pixels
        flat = weights.reshape(batch, -1)[:, self._flat_valid]
        c = weights.new_zeros(batch, self.graph.num_variables).index_copy(1, self._d_cols, flat)
        z = self.qp(c)
        d = weights.new_zeros(batch, 6 * n_pix).index_copy(1, self._flat_valid, z[:, self._d_cols])
        return CutSolution(
            p=z[:, :n_pix].reshape(batch, self.height, self.width),
            p_s=z[:, n_pix],
            p_t=z[:, n_pix + 1],
            d=d.reshape(batch, 6, self.height, self.width),
        )

    def extra_repr(self) -> str:
        return f"{self.height}x{self.width}, gamma={self.gamma}, b0={self.b0}, form={self.form}, engine={self.engine}"
