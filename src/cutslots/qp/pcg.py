"""Batched preconditioned conjugate gradients for many SPD systems at once.

``rhs: (B, K, *rest)`` holds ``B`` systems ``A_b x = b`` with ``K`` right-hand sides each;
``matvec`` and ``precondition`` apply ``A_b`` and ``P_b^{-1}`` (both SPD) to a tensor of that
shape. Every right-hand side has its own step sizes, so the ``B K`` recurrences are independent
and each stops once its residual meets the tolerance (a stopped one keeps a zero step size).

The stopping test uses the recursively updated residual, which drifts from ``b - A x`` in
finite precision. So whenever every recursion has stopped, the true residual is computed and
the right-hand sides still above the tolerance restart from their current iterate (with a
fresh search direction). What :func:`pcg` reports is the true residual: the tolerance is
checked, not assumed. A right-hand side whose true residual did not halve since the previous
restart has *stalled*: rounding bounds it below (about ``eps ||A|| ||x||``, which the float32
iterate of a stiff system cannot beat), so it is dropped instead of iterated to ``max_iter``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Operator = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PCGResult:
    """``x: (B, K, *rest)``; ``iterations: (B, K)`` int64 steps each right-hand side took;
    ``residual: (B, K)`` its true relative residual ``||b - A x|| / ||b||`` (0 where ``b = 0``);
    ``stalled: (B, K)`` bool, dropped above the tolerance because rounding stopped its progress."""

    x: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    stalled: torch.Tensor


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vecdot(a.flatten(2), b.flatten(2))  # (B, K)


def _column(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(v.shape + (1,) * (like.dim() - 2))  # (B, K, 1, ...) to scale whole right-hand sides


def pcg(matvec: Operator, precondition: Operator, rhs: torch.Tensor, *, tol: float, max_iter: int) -> PCGResult:
    """Solve ``A x = rhs`` from ``x = 0`` until ``||rhs - A x|| <= tol ||rhs||`` per right-hand
    side or ``max_iter`` steps in all (restarts included); see the module docstring."""
    x = torch.zeros_like(rhs)
    b_norm = torch.linalg.vector_norm(rhs.flatten(2), dim=-1)  # (B, K)
    target = tol * b_norm
    iterations = torch.zeros(target.shape, dtype=torch.int64, device=rhs.device)
    stalled = torch.zeros_like(iterations, dtype=torch.bool)
    r = rhs.clone()  # the true residual at x = 0
    steps, previous = 0, None
    while True:
        residual = torch.linalg.vector_norm(r.flatten(2), dim=-1)  # (B, K)
        active = residual > target  # b = 0 is solved by x = 0: 0 > 0 is false
        if steps >= max_iter:
            break
        if previous is not None:  # every recursion met its target, yet this is still above
            stalled |= active & (residual > 0.5 * previous)
            active &= ~stalled
        if not bool(active.any()):
            break
        steps += _recursion(matvec, precondition, x, r, active, target, iterations, max_iter - steps)
        r = torch.sub(rhs, matvec(x), out=r)
        previous = residual
    relative = torch.where(b_norm > 0, residual / b_norm.clamp_min(torch.finfo(b_norm.dtype).tiny), 0)
    return PCGResult(x, iterations, relative, stalled)


def _recursion(
    matvec: Operator,
    precondition: Operator,
    x: torch.Tensor,
    r: torch.Tensor,
    active: torch.Tensor,
    target: torch.Tensor,
    iterations: torch.Tensor,
    budget: int,
) -> int:
    """Plain PCG from ``x`` with residual ``r`` (both updated in place) on the ``active``
    right-hand sides until their recursive residuals meet ``target`` or ``budget`` steps;
    returns the steps taken."""
    z = precondition(r)
    p = z.clone()  # p is updated in place; a preconditioner may hand back its input
    rz = _dot(r, z)  # (B, K)
    for step in range(1, budget + 1):
        ap = matvec(p)
        # alpha = r.z / p.A p; p.A p > 0 on active columns (A SPD, p != 0 while r != 0). An
        # inactive column may divide by 0 (b = 0 has p = 0): where() drops that quotient.
        alpha = torch.where(active, rz / _dot(p, ap), 0)  # (B, K)
        x.addcmul_(_column(alpha, x), p)
        r.addcmul_(_column(alpha, r), ap, value=-1)
        iterations += active
        active = active & (torch.linalg.vector_norm(r.flatten(2), dim=-1) > target)
        if not bool(active.any()):
            return step
        z = precondition(r)
        rz_next = _dot(r, z)
        beta = torch.where(active, rz_next / rz, 0)  # (B, K); rz > 0 on active columns, as above
        p.mul_(_column(beta, p)).add_(z)
        rz = rz_next
    return budget
