"""Exact closed-form solution of the paper-form grid cut QP (no factorization).

Derivation: ``docs/cut-qp.md`` (and the design note it summarises). Eliminating the edge
variables leaves ``M p = r`` over the vertex variables with
``M = gamma/2 L + gamma I + gamma u u^T``, ``u = e_s - e_t``. Its pixel block is
``K = gamma (L_grid + 2 I)``, diagonalised by the orthonormal DCT-II (free boundary), and
the two terminals couple through constant vectors only, so a 2 x 2 Schur complement gives
``p_s, p_t``. Per QP the work is four matrix products along the grid axes (half-size ones
on long even axes, see ``_AxisDCT``) plus element-wise passes. Every step is linear in
the weights, so autograd is exact.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch

_DCT_CACHE: dict[tuple[int, torch.dtype, str], torch.Tensor] = {}


def dct_matrix(n: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """Orthonormal DCT-II matrix ``D: (n, n)``; ``D @ x`` transforms ``x`` along its first axis."""
    key = (n, dtype, str(device))
    if key not in _DCT_CACHE:
        k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
        j = torch.arange(n, dtype=torch.float64).unsqueeze(0)
        D = torch.cos(math.pi * (2 * j + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
        D[0] /= math.sqrt(2.0)
        _DCT_CACHE[key] = D.to(dtype=dtype, device=device)
    return _DCT_CACHE[key]


def grid_laplacian_eigenvalues(height: int, width: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Eigenvalues ``(H, W)`` of the free-boundary 4-neighbour grid Laplacian in the DCT basis."""
    lam_h = 2 - 2 * torch.cos(math.pi * torch.arange(height, dtype=torch.float64) / height)
    lam_w = 2 - 2 * torch.cos(math.pi * torch.arange(width, dtype=torch.float64) / width)
    return (lam_h[:, None] + lam_w[None, :]).to(dtype=dtype, device=device)


def divergence(
    weights: torch.Tensor, out: torch.Tensor | None = None, across: torch.Tensor | None = None
) -> torch.Tensor:
    """Pixel divergence ``(B, H, W)`` of ``weights: (B, 6, H, W)``: ``(B^T w)`` at the pixels.

    Weight leaving each pixel minus weight entering it; edges leaving the grid are ignored.
    Written into ``out`` when given; ``across: (B, H, W)`` is optional scratch.
    """
    right, left, down, up, source, sink = weights.unbind(1)
    div = torch.sub(sink, source, out=out)
    across = torch.empty_like(div) if across is None else across
    # Net flow across each neighbour pair (right minus the opposite left edge), added at its
    # tail and subtracted at its head; similarly down/up.
    flow = torch.sub(right[..., :, :-1], left[..., :, 1:], out=across[..., :, :-1])
    div[..., :, :-1] += flow
    div[..., :, 1:] -= flow
    flow = torch.sub(down[..., :-1, :], up[..., 1:, :], out=across[..., :-1, :])
    div[..., :-1, :] += flow
    div[..., 1:, :] -= flow
    return div


def edge_differences(
    x: torch.Tensor,
    x_s: torch.Tensor,
    x_t: torch.Tensor,
    out: torch.Tensor | None = None,
    plus: torch.Tensor | None = None,
    alpha: float = 1.0,
) -> torch.Tensor:
    """``(B x)_e = x_tail - x_head`` for every edge: ``(B, 6, H, W)``, 0 on absent edges.

    ``x: (B, H, W)`` at the pixels, ``x_s, x_t: (B,)`` at the terminals; written into ``out``
    when given, with ``alpha * plus`` (``(B, 6, H, W)``) added when given. This is the adjoint
    of :func:`divergence` extended to the terminals.
    """
    B, H, W = x.shape
    out = x.new_empty(B, 6, H, W) if out is None else out
    torch.sub(x[:, :, :-1], x[:, :, 1:], out=out[:, 0, :, :-1])
    torch.sub(x[:, :, 1:], x[:, :, :-1], out=out[:, 1, :, 1:])
    torch.sub(x[:, :-1, :], x[:, 1:, :], out=out[:, 2, :-1, :])
    torch.sub(x[:, 1:, :], x[:, :-1, :], out=out[:, 3, 1:, :])
    torch.sub(x_s[:, None, None], x, out=out[:, 4])
    torch.sub(x, x_t[:, None, None], out=out[:, 5])
    if plus is not None:
        out.add_(plus, alpha=alpha)
    # Absent edges: zero the entries the slices above skipped (and what `plus` put there).
    out[:, 0, :, -1] = 0
    out[:, 1, :, 0] = 0
    out[:, 2, -1, :] = 0
    out[:, 3, 0, :] = 0
    return out


_FOLD_MIN = 96  # fold even axes at least this long: measured break-even between 64 and 128 (2-core CPU)


class _AxisDCT:
    """The orthonormal DCT-II along one grid axis of length ``n``, by matrix products.

    For even ``n`` the symmetry ``D[k, n-1-j] = (-1)^k D[k, j]`` folds the axis first: the even
    frequencies are a half-size product with ``x_lo + reverse(x_hi)``, the odd ones with
    ``x_lo - reverse(x_hi)``: half the flops for two cheap passes (the products run near the
    CPU's peak, so flops are what the solve costs at large grids). Coefficients are kept
    split by frequency parity along a new leading axis of size ``P`` (2 folded, 1 not).
    """

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device) -> None:
        D = dct_matrix(n, torch.float64)
        self.folded = n % 2 == 0 and n >= _FOLD_MIN
        self.half = n // 2
        rows = [torch.arange(0, n, 2), torch.arange(1, n, 2)] if self.folded else [torch.arange(n)]
        cols = slice(0, self.half) if self.folded else slice(None)
        self.frequencies = rows  # the frequency of each coefficient, per parity
        self.mats = [D[r, cols].to(dtype=dtype, device=device) for r in rows]
        self.mats_t = [m.T.contiguous() for m in self.mats]

    def analysis(self, x: torch.Tensor, dim: int, scratch: _Scratch) -> torch.Tensor:
        """``x`` with the axis at ``dim`` (-1 or -2) -> coefficients ``(P, *x.shape)``, axis halved when folded."""
        if self.folded:
            lo, hi = x.narrow(dim, 0, self.half), x.narrow(dim, self.half, self.half).flip(dim)
            u = scratch.get(f"fold{dim}", (2,) + lo.shape)
            torch.add(lo, hi, out=u[0])
            torch.sub(lo, hi, out=u[1])
        else:
            u = x.unsqueeze(0)
        y = scratch.get(f"coef{dim}", u.shape)
        for k, (m, m_t) in enumerate(zip(self.mats, self.mats_t)):
            if dim == -1:
                torch.matmul(u[k], m_t, out=y[k])
            else:
                torch.matmul(m, u[k], out=y[k])
        return y

    def synthesis(self, y: torch.Tensor, dim: int, out: torch.Tensor, scratch: _Scratch) -> torch.Tensor:
        """Inverse of :meth:`analysis`: coefficients ``(P, ...)`` -> ``out`` (the axis at ``dim`` full)."""
        parts = scratch.get(f"fold{dim}", y.shape) if self.folded else out.unsqueeze(0)
        for k, (m, m_t) in enumerate(zip(self.mats, self.mats_t)):
            if dim == -1:
                torch.matmul(y[k], m, out=parts[k])
            else:
                torch.matmul(m_t, y[k], out=parts[k])
        if self.folded:
            torch.add(parts[0], parts[1], out=out.narrow(dim, 0, self.half))
            out.narrow(dim, self.half, self.half).copy_(parts[0].sub_(parts[1]).flip(dim))
        return out


class _Scratch:
    """Buffers that every batch chunk of one call reuses, by name and shape. Allocated once per
    call instead of once per chunk, the chunks' intermediates do not make the allocator return
    pages to the kernel and fault them in (zeroed) again for the next chunk. A name is shared
    only by steps whose earlier contents are dead by then (a fold's input, its inverse's output)."""

    def __init__(self, like: torch.Tensor) -> None:
        self.like = like
        self.buffers: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        key = (name, tuple(shape))
        if key not in self.buffers:
            self.buffers[key] = self.like.new_empty(shape)
        return self.buffers[key]


class _Spectral:
    """The fixed linear algebra of an ``H x W`` grid: ``M^{-1}`` via the DCT and a 2x2 system."""

    def __init__(self, height: int, width: int, gamma: float, dtype: torch.dtype, device: torch.device) -> None:
        n = height * width
        self.dct_h, self.dct_w = _AxisDCT(height, dtype, device), _AxisDCT(width, dtype, device)
        # Both solves (forward and adjoint) scale their right-hand side by -1/2: folded in here.
        scale = -0.5 / (gamma * (grid_laplacian_eigenvalues(height, width, torch.float64, "cpu") + 2))
        # In the coefficients' layout (P_h, P_w, 1, m_h, m_w).
        self.spectral_scale = torch.stack(
            [torch.stack([scale[fh][:, fw] for fw in self.dct_w.frequencies]) for fh in self.dct_h.frequencies]
        )[:, :, None].to(dtype=dtype, device=device)
        self.sqrt_n = math.sqrt(n)  # the orthonormal DCT maps the constant image c to c sqrt(n) e_00
        self.a = gamma * (n / 2 + 2 - n / 8)
        self.o = -gamma * (1 + n / 8)
        self.det = self.a * self.a - self.o * self.o

    def solve(
        self, r: torch.Tensor, r_s: torch.Tensor, r_t: torch.Tensor, out: torch.Tensor, scratch: _Scratch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Solve ``M [p; p_s; p_t] = [-r/2; r_s; r_t]``; returns ``p_s, p_t: (b,)``, ``p`` goes to ``out``.

        ``r, out: (b, H, W)``. ``M`` is symmetric, so this is also its adjoint.
        """
        coef = self.dct_h.analysis(self.dct_w.analysis(r, -1, scratch), -2, scratch)  # (P_h, P_w, b, m_h, m_w)
        # Schur complement on the terminals: K = gamma (L_grid + 2 I) maps 1 to 2 gamma 1, so
        # they see the pixel sum of r, which is the DC coefficient times sqrt(n).
        quarter_sum = coef[0, 0, :, 0, 0] * (-0.5 / 4 * self.sqrt_n)
        rhs_s, rhs_t = r_s + quarter_sum, r_t + quarter_sum
        p_s = (self.a * rhs_s - self.o * rhs_t) / self.det
        p_t = (self.a * rhs_t - self.o * rhs_s) / self.det
        # Pixels: K^{-1}(-r/2) + (p_s + p_t)/4 by diagonal scaling (the constant enters as the
        # DC coefficient) and the inverse DCT.
        coef.mul_(self.spectral_scale)
        coef[0, 0, :, 0, 0] += (p_s + p_t) * (self.sqrt_n / 4)
        rows = scratch.get("rows", coef.shape[1:-2] + (r.shape[-2], coef.shape[-1]))
        self.dct_w.synthesis(self.dct_h.synthesis(coef, -2, rows, scratch), -1, out, scratch)
        return p_s, p_t


@functools.lru_cache(maxsize=32)
def _spectral(height: int, width: int, gamma: float, dtype: torch.dtype, device: torch.device) -> _Spectral:
    return _Spectral(height, width, gamma, dtype, device)


_CHUNK_ELEMENTS = 1 << 19  # grid values per (b, H, W) intermediate: 2 MB in float32 (best of 2^17..2^20 here)


def _chunks(batch: int, height: int, width: int) -> list[slice]:
    """Batch chunks whose ``(b, H, W)`` intermediates stay in cache. Small intermediates also
    come back from the allocator's free lists rather than as fresh pages the kernel must
    fault in and zero, which at these sizes costs more than the arithmetic."""
    size = max(1, _CHUNK_ELEMENTS // (height * width))
    return [slice(i, min(i + size, batch)) for i in range(0, batch, size)]


class _VertexSolve(torch.autograd.Function):
    """``w -> (p, p_s, p_t, handle)`` with a hand-written adjoint (the map is affine in ``w``).

    ``handle: (B, 6, H, W)`` is a zero-stride placeholder through which the edge read-out
    (:class:`_EdgeVariables`) hands ``dL/dd`` back unchanged. Its whole contribution to the
    gradient (``-dL/dd / (2 gamma)`` on ``w``, ``1/2 B^T dL/dd`` on the vertex variables) is
    added here, chunk by chunk, instead of in a separate backward: that saves a full
    ``(B, 6, H, W)`` gradient allocation and the pass that sums two of them.
    """

    @staticmethod
    def forward(ctx: Any, weights: torch.Tensor, gamma: float, b0: float) -> tuple[torch.Tensor, ...]:
        ctx.set_materialize_grads(False)
        B, _, H, W = weights.shape
        spectral = _spectral(H, W, gamma, weights.dtype, weights.device)
        ctx.spectral, ctx.gamma, ctx.shape = spectral, gamma, weights.shape
        p = weights.new_empty(B, H, W)
        p_s, p_t = weights.new_empty(B), weights.new_empty(B)
        scratch = _Scratch(weights)
        for c in _chunks(B, H, W):
            w, b = weights[c], c.stop - c.start
            # r = -1/2 B^T w + gamma b0 (e_s - e_t); the solve applies the -1/2 to the pixels.
            r = divergence(w, out=scratch.get("r", (b, H, W)), across=scratch.get("across", (b, H, W)))
            r_s = -0.5 * w[:, 4].sum((-2, -1)) + gamma * b0  # the chunk is in cache by now
            r_t = 0.5 * w[:, 5].sum((-2, -1)) - gamma * b0
            p_s[c], p_t[c] = spectral.solve(r, r_s, r_t, p[c], scratch)
        handle = weights.new_zeros(()).expand(B, 6, H, W)
        return p, p_s, p_t, handle

    @staticmethod
    def backward(
        ctx: Any,
        grad_p: torch.Tensor | None,
        grad_s: torch.Tensor | None,
        grad_t: torch.Tensor | None,
        grad_d: torch.Tensor | None,
    ) -> tuple[Any, ...]:
        if grad_p is None and grad_s is None and grad_t is None and grad_d is None:
            return None, None, None
        # Output gradient on the vertex variables G = (dL/dp, dL/dp_s, dL/dp_t) + 1/2 B^T dL/dd.
        # M is symmetric, so dL/dr = M^{-1} G; r = -1/2 B^T w gives dL/dw = -1/2 B dL/dr (edge
        # differences of the solve, which applies the -1/2 to the pixels), plus -dL/dd/(2 gamma).
        spectral, gamma = ctx.spectral, ctx.gamma
        B, _, H, W = ctx.shape
        ref = next(g for g in (grad_p, grad_d, grad_s, grad_t) if g is not None)
        grad_w = ref.new_empty(B, 6, H, W)
        scratch = _Scratch(ref)
        zeros = ref.new_zeros(B)
        grad_s = zeros if grad_s is None else grad_s
        grad_t = zeros if grad_t is None else grad_t
        for c in _chunks(B, H, W):
            b = c.stop - c.start
            work = scratch.get("r", (b, H, W))
            g_s, g_t = -0.5 * grad_s[c], -0.5 * grad_t[c]
            if grad_d is not None:
                gd = grad_d[c]
                g_pix = divergence(gd, out=work, across=scratch.get("across", (b, H, W))).mul_(0.5)
                g_s = g_s - 0.25 * gd[:, 4].sum((-2, -1))
                g_t = g_t + 0.25 * gd[:, 5].sum((-2, -1))
                if grad_p is not None:
                    g_pix.add_(grad_p[c])
            elif grad_p is not None:
                g_pix = grad_p[c]
            else:
                g_pix = work.zero_()
            q_s, q_t = spectral.solve(g_pix, g_s, g_t, work, scratch)
            direct = None if grad_d is None else grad_d[c]  # d's own -w/(2 gamma) term
            edge_differences(work, q_s, q_t, out=grad_w[c], plus=direct, alpha=-0.5 / gamma)
        return grad_w, None, None


class _EdgeVariables(torch.autograd.Function):
    """``d = 1/2 B [p; p_s; p_t] - w/(2 gamma)`` on existing edges, computed chunk by chunk.

    Its backward only hands ``dL/dd`` to ``handle``; :class:`_VertexSolve` applies it.
    """

    @staticmethod
    def forward(
        ctx: Any,
        handle: torch.Tensor,
        weights: torch.Tensor,
        p: torch.Tensor,
        p_s: torch.Tensor,
        p_t: torch.Tensor,
        gamma: float,
    ) -> torch.Tensor:
        B, _, H, W = weights.shape
        d = weights.new_empty(B, 6, H, W)
        scratch = _Scratch(weights)
        for c in _chunks(B, H, W):
            half = torch.mul(p[c], 0.5, out=scratch.get("half", tuple(p[c].shape)))  # cheaper than on d
            edge_differences(half, 0.5 * p_s[c], 0.5 * p_t[c], out=d[c], plus=weights[c], alpha=-0.5 / gamma)
        return d

    @staticmethod
    def backward(ctx: Any, grad_d: torch.Tensor) -> tuple[Any, ...]:
        return grad_d, None, None, None, None, None


def solve_grid_cut_closed_form(
    weights: torch.Tensor, gamma: float, b0: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Callable[[], torch.Tensor]]:
    """Solve the paper-form cut QP for ``weights: (B, 6, H, W)``.

    Returns ``p: (B, H, W)``, ``p_s: (B,)``, ``p_t: (B,)`` and a function computing the edge
    variables ``d: (B, 6, H, W)`` (``(p_tail - p_head)/2 - w/(2 gamma)``, 0 on absent edges) when
    called, so that callers reading only ``p`` never pay for them. Weights of edges leaving the
    grid are ignored (and get zero gradient). Inputs are assumed validated.
    """
    p, p_s, p_t, handle = _VertexSolve.apply(weights, gamma, b0)
    return (
        p,
        p_s,
        p_t,
        lambda: _EdgeVariables.apply(handle, weights.detach(), p.detach(), p_s.detach(), p_t.detach(), gamma),
    )
