"""``RandomWalkerQP``: K-way random-walker diffusion on a weighted grid as a differentiable layer.

For edge weights ``w >= 0`` on the 4-neighbour ``H x W`` grid and unaries ``u: (K, H, W) >= 0``
the layer returns the minimiser of ::

    E(x) = sum_k [ sum_(ij) w_ij (x_ik - x_jk)^2 + sum_i sum_l u_il (x_ik - [k = l])^2 ]

(one sum over undirected edges), i.e. the solution of ``A x_k = u_k`` for every k with
``A = L_w + diag(s)``, ``s = sum_l u_l``: one SPD matrix per image, shared by its K
right-hand sides. ``A 1 = s = sum_k u_k``, so ``sum_k x_k = 1``; ``A`` is an M-matrix, so
``x >= 0`` and hence ``x <= 1``; ``w = 0`` gives ``x = u / s``; ``(c w, c u)`` gives the same ``x``.
Derivation and measurements: ``docs/random-walker.md``.

Engines:

``"cg"`` (default)
    batched PCG (:mod:`cutslots.qp.pcg`) with a 5-point stencil product and a DCT
    preconditioner; CPU or CUDA, float32 or float64.
``"sparse"``
    one sparse Cholesky/LU per image (CHOLMOD when installed, else SuperLU), reused for the K
    right-hand sides and the adjoint; CPU float64 internally. The reference and the fallback.

Backward (both engines; derivation at :func:`_input_gradients`): with ``g_k = dL/dx_k`` and
``lambda_k = A^{-1} g_k``, per pixel i and edge (i, j) ::

    dL/du_l  = lambda_l - sum_k lambda_k * x_k
    dL/dw_ij = -sum_k (lambda_ki - lambda_kj)(x_ki - x_kj)

one adjoint solve with the same matrices, never an unrolled CG.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from typing import Any, Literal, Protocol

import numpy as np
import scipy.sparse as sp
import torch
from torch.autograd.function import once_differentiable

from cutslots.qp.autocast import float32_under_autocast
from cutslots.qp.cut_closed_form import dct_matrix, grid_laplacian_eigenvalues
from cutslots.qp.equality_qp import check_float_tensor
from cutslots.qp.factor import Backend, CholmodFactor, SuperLUFactor, resolve_backend
from cutslots.qp.grid_graph import check_grid_size
from cutslots.qp.pcg import pcg
from cutslots.qp.random_walker_irls import irls_systems

RandomWalkerEngine = Literal["cg", "sparse"]
ENGINES: tuple[str, ...] = ("cg", "sparse")
NonConvergence = Literal["raise", "warn"]
Mode = Literal["plain", "irls"]
MODES: tuple[str, ...] = ("plain", "irls")
ON_NONCONVERGENCE: tuple[str, ...] = ("raise", "warn")
DEFAULT_TOL = {torch.float32: 1e-4, torch.float64: 1e-8}


class ConvergenceError(RuntimeError):
    """CG ended above the tolerance (at ``max_iter``, or stalled); ``items``: the batch indices."""

    def __init__(self, message: str, items: list[int]) -> None:
        super().__init__(message)
        self.items = items


class ConvergenceWarning(RuntimeWarning):
    """Issued instead of :class:`ConvergenceError` with ``on_nonconvergence="warn"``."""


@dataclass
class SolveStats:
    """One CG solve of a batch: ``iterations: (B,)`` int64, the most steps any of an image's
    right-hand sides took; ``residual: (B,)`` their largest true relative residual;
    ``stalled: (B,)`` bool, whether one of them stopped early above ``tol`` (rounding)."""

    iterations: torch.Tensor
    residual: torch.Tensor
    stalled: torch.Tensor


@dataclass
class RandomWalkerStats:
    """CG diagnostics of one call: the forward solve, and the adjoint once backward ran."""

    forward: SolveStats | None = None
    backward: SolveStats | None = None


class _Grid:
    """One chunk's matrices ``A_b = L_w + diag(s)`` as stencil views.

    ``right: (b, 1, H, W-1)`` and ``down: (b, 1, H-1, W)`` are the weights of the existing
    edges (the ignored last column / row sliced away), ``diag: (b, 1, H, W)`` is ``s``.
    """

    def __init__(self, weights: torch.Tensor, diag: torch.Tensor) -> None:
        self.right = weights[:, 0:1, :, :-1]
        self.down = weights[:, 1:2, :-1, :]
        self.diag = diag

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for ``x: (b, K, H, W)``: the 5-point stencil, each edge's flow
        ``w_ij (x_i - x_j)`` added at its tail and subtracted at its head. Differences before
        weights: with weights far above the unaries, ``deg_i x_i - sum_j w_ij x_j`` would lose
        float32 digits to cancellation (CG's rounding floor measured 2-6x higher at w = 1e4)."""
        y = x * self.diag  # (b, K, H, W)
        flow = x[..., :, :-1] - x[..., :, 1:]  # (b, K, H, W-1)
        y[..., :, :-1].addcmul_(self.right, flow)
        y[..., :, 1:].addcmul_(self.right, flow, value=-1)
        flow = x[..., :-1, :] - x[..., 1:, :]  # (b, K, H-1, W)
        y[..., :-1, :].addcmul_(self.down, flow)
        y[..., 1:, :].addcmul_(self.down, flow, value=-1)
        return y


class _DCTPreconditioner:
    """``P_b^{-1} = (c_b L_grid + d_b I)^{-1}`` by the orthonormal DCT-II, which diagonalises the
    free-boundary grid Laplacian. ``c_b`` is image b's mean edge weight and ``d_b`` its mean
    ``s``: ``P_b`` is ``A_b`` with the weights and the diagonal each replaced by their mean,
    so it is exact for uniform images, and costs four small matrix products (a DCT and its
    inverse along each axis) and a diagonal scaling."""

    def __init__(self, grid: _Grid) -> None:
        H, W = grid.diag.shape[-2:]
        dtype, device = grid.diag.dtype, grid.diag.device
        self.dct_h, self.dct_w = dct_matrix(H, dtype, device), dct_matrix(W, dtype, device)
        n_edges = H * (W - 1) + (H - 1) * W
        edge_sum = grid.right.sum((1, 2, 3)) + grid.down.sum((1, 2, 3))  # (b,)
        c = edge_sum / max(n_edges, 1)  # (b,); a 1 x 1 grid has no edges (and L_grid = 0)
        d = grid.diag.mean((1, 2, 3))  # (b,), > 0 (checked at the layer)
        eig = grid_laplacian_eigenvalues(H, W, dtype, device)  # (H, W)
        self.scale = torch.reciprocal(c[:, None, None, None] * eig + d[:, None, None, None])  # (b, 1, H, W)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        coef = torch.matmul(self.dct_h, r) @ self.dct_w.T  # (b, K, H, W) DCT coefficients
        coef.mul_(self.scale)
        return torch.matmul(self.dct_h.T, coef) @ self.dct_w  # (b, K, H, W)


class _Systems(Protocol):
    """The matrices of one batch chunk, ready to solve ``A_b x_k = rhs_k`` any number of times."""

    def solve(self, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveStats | None]:
        """``rhs: (b, K, H, W)`` -> ``x`` of that shape (and CG's stats, if CG)."""
        ...


class _CGSystems:
    def __init__(self, weights: torch.Tensor, diag: torch.Tensor, tol: float, max_iter: int) -> None:
        self.grid = _Grid(weights, diag)
        self.precondition = _DCTPreconditioner(self.grid)
        self.tol, self.max_iter = tol, max_iter

    def solve(self, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveStats | None]:
        result = pcg(self.grid.matvec, self.precondition, rhs, tol=self.tol, max_iter=self.max_iter)
        return result.x, SolveStats(result.iterations.amax(1), result.residual.amax(1), result.stalled.any(1))


def _sparse_matrix(weights: np.ndarray, diag: np.ndarray) -> sp.csc_matrix:
    """``A = L_w + diag(s)`` as a CSC matrix over row-major pixels, from ``weights: (2, H, W)``
    and ``diag: (H, W)`` (float64; the ignored last column / row of the channels skipped)."""
    H, W = diag.shape
    pix = np.arange(H * W).reshape(H, W)
    tail = np.concatenate([pix[:, :-1].ravel(), pix[:-1, :].ravel()])
    head = np.concatenate([pix[:, 1:].ravel(), pix[1:, :].ravel()])
    w = np.concatenate([weights[0, :, :-1].ravel(), weights[1, :-1, :].ravel()])
    n = H * W
    degree = np.bincount(tail, w, n) + np.bincount(head, w, n)
    rows = np.concatenate([tail, head, pix.ravel()])
    cols = np.concatenate([head, tail, pix.ravel()])
    vals = np.concatenate([-w, -w, degree + diag.ravel()])
    return sp.csc_matrix((vals, (rows, cols)), shape=(n, n))


class _SparseSystems:
    def __init__(self, weights: torch.Tensor, diag: torch.Tensor, backend: Literal["scipy", "cholmod"]) -> None:
        factor_type = CholmodFactor if backend == "cholmod" else SuperLUFactor
        w = weights.detach().to("cpu", torch.float64).numpy()
        s = diag.detach().to("cpu", torch.float64).numpy()
        self.factors = [factor_type(_sparse_matrix(w[i], s[i, 0])) for i in range(w.shape[0])]

    def solve(self, rhs: torch.Tensor) -> tuple[torch.Tensor, SolveStats | None]:
        b, K, H, W = rhs.shape
        r = rhs.detach().to("cpu", torch.float64).numpy().reshape(b, K, H * W)
        x = np.stack([f.solve(np.ascontiguousarray(r[i].T)).T for i, f in enumerate(self.factors)])  # (b, K, N)
        return torch.from_numpy(x.reshape(b, K, H, W)).to(rhs.device, rhs.dtype), None


# Values per (b, K, H, W) CG vector on CPU (1 MB in float32): few chunks, so little per-op overhead,
# with the working vectors still near the 4 MB of L2. Measured at 64 px x 12 labels: 5 images per
# chunk 8-10 % faster than 2 (1 << 17), 8 images slower again; 13 % faster at K = 2.
_CHUNK_ELEMENTS = 1 << 18


def _chunks(batch: int, per_item: int, device: torch.device) -> list[slice]:
    """Batch chunks whose CG vectors stay in cache on a CPU; on a GPU the batch is one chunk."""
    size = batch if device.type != "cpu" else max(1, _CHUNK_ELEMENTS // per_item)
    return [slice(i, min(i + size, batch)) for i in range(0, batch, size)]


def _input_gradients(
    lam: torch.Tensor, x: torch.Tensor, grad_w: torch.Tensor | None, grad_u: torch.Tensor | None
) -> None:
    """Write ``dL/dw`` into ``grad_w: (b, 2, H, W)`` (zeros on entry: the ignored last column /
    row stay 0) and ``dL/du`` into ``grad_u: (b, K, H, W)``, each when given, from
    ``lambda = A^{-1} dL/dx`` and ``x``."""
    # A x_k = u_k with A = L_w + diag(s), s = sum_l u_l. Differentiating:
    #   dA x_k + A dx_k = du_k,  dA = dL_w + diag(sum_l du_l)  =>  dx_k = A^{-1} (du_k - dA x_k).
    # With g_k = dL/dx_k and A symmetric, lambda_k = A^{-1} g_k gives
    #   dL = sum_k g_k . dx_k = sum_k lambda_k . (du_k - dA x_k).
    # Unaries: du_l is x_l's right-hand side and sits in diag(du_l) of every k's dA:
    #   sum_k lambda_k . diag(du_l) x_k = sum_i du_li sum_k lambda_ki x_ki
    #   =>  dL/du_l = lambda_l - sum_k lambda_k * x_k   (per pixel).
    # Weights: dL_w / dw_ij = (e_i - e_j)(e_i - e_j)^T, so
    #   dL/dw_ij = -sum_k lambda_k . (e_i - e_j)(e_i - e_j)^T x_k = -sum_k (lambda_ki - lambda_kj)(x_ki - x_kj).
    if grad_u is not None:
        torch.sub(lam, (lam * x).sum(1, keepdim=True), out=grad_u)  # (b, K, H, W)
    if grad_w is not None:
        d_lam, d_x = lam[..., :, :-1] - lam[..., :, 1:], x[..., :, :-1] - x[..., :, 1:]  # (b, K, H, W-1)
        grad_w[:, 0, :, :-1] = -(d_lam * d_x).sum(1)
        d_lam, d_x = lam[..., :-1, :] - lam[..., 1:, :], x[..., :-1, :] - x[..., 1:, :]  # (b, K, H-1, W)
        grad_w[:, 1, :-1, :] = -(d_lam * d_x).sum(1)


def _batch_stats(parts: list[SolveStats | None]) -> SolveStats | None:
    """The chunks' stats as one batch's (``None`` for the sparse engine)."""
    stats = [p for p in parts if p is not None]
    if not stats:
        return None
    return SolveStats(**{f.name: torch.cat([getattr(s, f.name) for s in stats]) for f in fields(SolveStats)})


class _Solver:
    """What the autograd function needs of the layer: how to build a chunk's systems, and
    what to do with a solve that did not converge."""

    def __init__(self, layer: RandomWalkerQP, dtype: torch.dtype) -> None:
        self.engine, self.on_nonconvergence = layer.engine, layer.on_nonconvergence
        self.tol = DEFAULT_TOL[dtype] if layer.tol is None else layer.tol
        self.max_iter, self.backend = layer.max_iter, layer.backend

    def systems(self, weights: torch.Tensor, diag: torch.Tensor) -> _Systems:
        if self.engine == "cg":
            return _CGSystems(weights, diag, self.tol, self.max_iter)
        return _SparseSystems(weights, diag, resolve_backend(self.backend))

    def check(self, stats: SolveStats | None, what: str, stacklevel: int) -> None:
        """Raise or warn, naming every batch item whose residual is above ``tol``."""
        if stats is None:
            return
        failed = stats.residual > self.tol
        if not bool(failed.any()):
            return
        items = torch.nonzero(failed).flatten().tolist()
        message = f"RandomWalkerQP: CG ({what}) missed tol={self.tol:g} for batch items {items} (of {failed.numel()})"
        for mask, why, advice in (
            (failed & ~stats.stalled, f"stopped at max_iter={self.max_iter}", "raise max_iter"),
            (failed & stats.stalled, "stalled (rounding: about eps ||A|| ||x|| / ||u||)", "use float64 inputs"),
        ):
            if bool(mask.any()):
                worst = stats.residual[mask].max().item()
                group = torch.nonzero(mask).flatten().tolist()
                message += f"; {group} {why} at relative residuals up to {worst:.2e}: {advice}"
        message += ", raise tol, or use engine='sparse'"
        if self.on_nonconvergence == "raise":
            raise ConvergenceError(message, items)
        warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)


def _solved_labels(unaries: torch.Tensor) -> torch.Tensor | None:
    """For K = 2, the label solved per image: the one with the smaller ``||u_k||`` (``(B,)``
    int64); ``None`` (solve every label) for K != 2.

    ``A 1 = s = u_1 + u_2``, so ``x_2 = 1 - x_1`` and its residual is ``u_2 - A x_2 = -r_1``:
    solving the label of smaller norm keeps the other's relative residual
    ``||r_1|| / ||u_2||`` below the solved one's, so ``tol`` holds for both at half the work.
    For K > 2, deriving one label from the rest would need the others' residuals to sum below
    its own target, i.e. tighter tolerances and more iterations, which eat the saving."""
    if unaries.shape[1] != 2:
        return None
    norms = torch.linalg.vector_norm(unaries.flatten(2), dim=-1)  # (B, 2)
    return (norms[:, 1] < norms[:, 0]).long()  # (B,)


def _pick(v: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """``v: (b, 2, H, W)``, ``label: (b,)`` -> ``v[i, label[i]]`` as ``(b, 1, H, W)``."""
    return torch.take_along_dim(v, label.view(-1, 1, 1, 1), dim=1)


def _pair(solved: torch.Tensor, other: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """``solved``, ``other``: (b, 1, H, W) -> (b, 2, H, W) with ``solved`` at ``label``."""
    first = (label == 0).view(-1, 1, 1, 1)
    return torch.cat([torch.where(first, solved, other), torch.where(first, other, solved)], 1)


class _RandomWalkerFunction(torch.autograd.Function):
    """``(w, u) -> x`` solving ``(L_w + diag(s)) x_k = u_k``, chunk by chunk; ``diag: (B, 1, H, W)
    = s`` comes in precomputed and detached (its dependence on ``u`` is in the ``dL/du`` formula).
    The chunks' systems (CG's stencil views, the sparse engine's factors) are kept for the
    adjoint solve.

    K = 2 (every IRLS system) solves one label per image (:func:`_solved_labels`), and so does
    the adjoint: adding one vector ``g_0`` to both ``g_k`` adds ``mu = A^{-1} g_0`` to both
    ``lambda_k``, which changes neither ``lambda_l - sum_k lambda_k x_k`` nor
    ``sum_k (lambda_ki - lambda_kj)(x_ki - x_kj)`` since ``sum_k x_k = 1``; so it solves
    ``g_solved - g_other`` and takes ``lambda_other = 0``."""

    @staticmethod
    def forward(
        ctx: Any,
        weights: torch.Tensor,
        unaries: torch.Tensor,
        diag: torch.Tensor,
        solver: _Solver,
        stats: RandomWalkerStats,
    ) -> torch.Tensor:
        B, K, H, W = unaries.shape
        label = _solved_labels(unaries)
        chunks = _chunks(B, K * H * W, unaries.device)
        systems = [solver.systems(weights[c], diag[c]) for c in chunks]
        x = torch.empty_like(unaries)
        parts = []
        for c, system in zip(chunks, systems):
            if label is None:
                x[c], part = system.solve(unaries[c])
            else:
                solved, part = system.solve(_pick(unaries[c], label[c]))  # (b, 1, H, W)
                x[c] = _pair(solved, 1 - solved, label[c])
            parts.append(part)
        stats.forward = _batch_stats(parts)
        ctx.solver, ctx.systems, ctx.chunks, ctx.stats, ctx.label = solver, systems, chunks, stats, label
        ctx.save_for_backward(x)
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_x: torch.Tensor) -> tuple[Any, ...]:
        (x,) = ctx.saved_tensors
        need_w, need_u = ctx.needs_input_grad[:2]
        grad_w = x.new_zeros(x.shape[0], 2, *x.shape[2:]) if need_w else None
        grad_u = torch.empty_like(x) if need_u else None
        parts = []
        for c, system in zip(ctx.chunks, ctx.systems):
            g = grad_x[c]  # (b, K, H, W)
            if ctx.label is None:
                lam, part = system.solve(g.contiguous())  # A is symmetric: its own adjoint
            else:
                label = ctx.label[c]
                solved, part = system.solve(_pick(g, label) - _pick(g, 1 - label))  # (b, 1, H, W)
                lam = _pair(solved, torch.zeros_like(solved), label)  # (b, 2, H, W)
            parts.append(part)
            _input_gradients(lam, x[c], None if grad_w is None else grad_w[c], None if grad_u is None else grad_u[c])
        ctx.stats.backward = _batch_stats(parts)
        ctx.solver.check(ctx.stats.backward, "adjoint", stacklevel=2)
        return grad_w, grad_u, None, None, None


def _check_inputs(edge_weights: torch.Tensor, unaries: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Validate the layer's inputs, cheap checks first; returns ``s = sum_k u_k: (B, 1, H, W)``."""
    for name, x, channels in (("edge_weights", edge_weights, "2"), ("unaries", unaries, "K")):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[2:] != (height, width) or (channels == "2" and x.shape[1] != 2):
            raise ValueError(f"{name} must have shape (B, {channels}, {height}, {width}), got {tuple(x.shape)}")
    if unaries.shape[1] == 0:
        raise ValueError(f"unaries must have K >= 1 channels, got shape {tuple(unaries.shape)}")
    for what, a, b in (
        ("batch size", edge_weights.shape[0], unaries.shape[0]),
        ("dtype", edge_weights.dtype, unaries.dtype),
        ("device", edge_weights.device, unaries.device),
    ):
        if a != b:
            raise (TypeError if what == "dtype" else ValueError)(
                f"edge_weights and unaries must have the same {what}, got {a} and {b}"
            )
    for name, x in (("edge_weights", edge_weights), ("unaries", unaries)):
        if x.dtype not in (torch.float32, torch.float64):
            check_float_tensor(name, x, ())  # raises, naming the dtype
    with torch.no_grad():
        diag = unaries.sum(1, keepdim=True)  # (B, 1, H, W)
        empty = (diag == 0).flatten(1).any(1)  # (B,)
        if unaries.numel() == 0:  # B = 0: nothing to check
            return diag
        # One host sync for every check: sums (NaN/inf reach them; the unaries' through diag,
        # already summed over k), minima, empty-pixel count.
        summary = torch.stack(
            [edge_weights.sum(), diag.sum(), edge_weights.amin(), unaries.amin(), empty.sum().to(diag.dtype)]
        ).tolist()
    for name, x, total, low in (
        ("edge_weights", edge_weights, summary[0], summary[2]),
        ("unaries", unaries, summary[1], summary[3]),
    ):
        if not math.isfinite(total):
            check_float_tensor(name, x, ())  # the full check: NaN/inf, or only the sum overflowed
        if low < 0:
            raise ValueError(f"{name} must be >= 0, got a minimum of {low:g}")
    if summary[4]:
        items = torch.nonzero(empty).flatten().tolist()
        raise ValueError(
            f"unaries must have sum_k u_k > 0 at every pixel; batch items {items} have pixels where "
            "every unary is 0 (add a small positive floor, e.g. unaries + 1e-6)"
        )
    return diag


class RandomWalkerQP(torch.nn.Module):
    """Random-walker diffusion of unaries over a weighted grid: ``(edge_weights, unaries) -> x``.

    Args:
        height: grid height (>= 1).
        width: grid width (>= 1).
        engine: ``"cg"`` (batched PCG, CPU/CUDA) or ``"sparse"`` (a factorization per image,
            CPU float64 internally; the reference).
        tol: CG's tolerance on the true relative residual ``||u_k - A x_k|| / ||u_k||`` of every
            right-hand side (and of the adjoint solve's). Default 1e-4 for float32 inputs, 1e-8
            for float64. Rounding keeps the residual above about ``eps * max(w) / mean(s)``
            (``eps`` 1.2e-7 in float32, 2.2e-16 in float64); a solve that gets stuck there
            stops early as *stalled*.
        max_iter: CG steps per solve (restarts included).
        on_nonconvergence: ``"raise"`` (default) a :class:`ConvergenceError` naming the batch
            items whose residual is still above ``tol`` (after ``max_iter`` steps, or stalled),
            or ``"warn"``: a :class:`ConvergenceWarning` with the same message, and the last
            iterate is returned.
        backend: the sparse engine's factorization, ``"auto"`` (CHOLMOD when installed),
            ``"scipy"`` or ``"cholmod"``.
        mode: ``"plain"`` (the quadratic energy above) or ``"irls"``: ``iterations`` reweighted
            solves towards the L1 energy (the true cut), see :mod:`cutslots.qp.random_walker_irls`;
            gradients flow through the whole sequence of solves.
        iterations: IRLS steps.
        eps: the floor of ``|x_i - x_j|`` and ``|x - target|`` in the IRLS weights
            ``1 / max(eps, .)``.

    Forward: ``edge_weights: (B, 2, H, W) >= 0`` (channel 0: edge to the right neighbour, its
    last column ignored; channel 1: edge to the neighbour below, its last row ignored; the
    ignored entries get zero gradient) and ``unaries: (B, K, H, W) >= 0``, K >= 1, same dtype
    (float32/float64) and device, with ``sum_k u_k > 0`` at every pixel: a pixel where every
    unary is 0 raises ``ValueError`` (see ``docs/random-walker.md`` for why). Returns
    ``x: (B, K, H, W)``. After each call ``stats`` holds CG's iteration counts and residuals
    (:class:`RandomWalkerStats`; ``None`` entries for the sparse engine). Inside ``torch.autocast``
    bfloat16/float16 inputs are solved in float32 (its default ``tol``) and ``x`` cast back to
    their dtype (:mod:`cutslots.qp.autocast`); outside it they are rejected.
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        engine: RandomWalkerEngine = "cg",
        tol: float | None = None,
        max_iter: int = 1000,
        on_nonconvergence: NonConvergence = "raise",
        backend: Backend = "auto",
        mode: Mode = "plain",
        iterations: int = 8,
        eps: float = 0.01,
    ) -> None:
        super().__init__()
        check_grid_size(height, width)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
            raise ValueError(f"eps must be a number in (0, 1], got {eps!r}")
        self.mode, self.iterations, self.eps = mode, iterations, float(eps)
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1):
            raise ValueError(f"tol must be a number in (0, 1) or None, got {tol!r}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        if on_nonconvergence not in ON_NONCONVERGENCE:
            raise ValueError(f"on_nonconvergence must be one of {ON_NONCONVERGENCE}, got {on_nonconvergence!r}")
        if engine == "sparse":
            resolve_backend(backend)  # fail here, not at the first call
        self.height, self.width, self.engine = height, width, engine
        self.tol = None if tol is None else float(tol)
        self.max_iter, self.on_nonconvergence, self.backend = max_iter, on_nonconvergence, backend
        self.stats = RandomWalkerStats()

    @float32_under_autocast
    def forward(self, edge_weights: torch.Tensor, unaries: torch.Tensor) -> torch.Tensor:
        diag = _check_inputs(edge_weights, unaries, self.height, self.width)
        if unaries.shape[0] == 0:
            self.stats = RandomWalkerStats()
            return unaries.clone()
        x = self._solve(edge_weights, unaries, diag)
        if self.mode == "irls" and self.iterations:
            for _ in range(self.iterations):
                x = self._solve(*irls_systems(edge_weights, unaries, x, self.eps))[:, 0].view_as(x)  # (B, K, H, W)
            x = x / x.sum(1, keepdim=True)  # each label solved alone: renormalise (a no-op for K = 2)
        return x

    def _solve(
        self, edge_weights: torch.Tensor, unaries: torch.Tensor, diag: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One differentiable solve of ``(L_w + diag(sum_l u_l)) x_k = u_k``; sets ``stats``.
        ``diag``: ``sum_l u_l`` if already computed (by the input checks)."""
        self.stats = RandomWalkerStats()
        if diag is None:
            diag = unaries.sum(1, keepdim=True).detach()  # (B, 1, H, W); its gradient is in dL/du
        solver = _Solver(self, unaries.dtype)
        x: torch.Tensor = _RandomWalkerFunction.apply(edge_weights, unaries, diag, solver, self.stats)
        # stacklevel: past nn.Module's call frames and the autocast wrapper, to the caller
        solver.check(self.stats.forward, "forward", stacklevel=7)
        return x

    def extra_repr(self) -> str:
        tol = "default" if self.tol is None else f"{self.tol:g}"
        irls = f", mode=irls, iterations={self.iterations}, eps={self.eps:g}" if self.mode == "irls" else ""
        return f"{self.height}x{self.width}, engine={self.engine}, tol={tol}, max_iter={self.max_iter}{irls}"
