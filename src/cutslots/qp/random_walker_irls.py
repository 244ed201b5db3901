"""Iteratively reweighted random-walker solves towards the L1 energy, i.e. the exact cut.

The random walker minimises a quadratic energy; the multi-label cut minimises its L1 form ::

    E_1(x) = sum_k [ sum_(ij) w_ij |x_ik - x_jk| + sum_i sum_l u_il |x_ik - [k = l]| ]

IRLS majorises every ``|t|`` at the current solution ``x0`` by ``t^2 / (2 |t0|) + |t0| / 2``
(tangent at ``t0``, with ``|t0|`` floored at ``eps``), so one step solves, for each label k on
its own, the quadratic problem with weights ::

    w^k_ij = w_ij / max(eps, |x0_ik - x0_jk|)        u^k_il = u_il / max(eps, |x0_ik - [k = l]|)

i.e. ``(L_{w^k} + diag(sum_l u^k_l)) x_k = u^k_k``: one matrix per label, which the batched
solver takes as ``B K`` systems. For K = 2 this is the issue's fg/bg rule (``w / |dx|``,
``u_fg / (1 - x)``, ``u_bg / x``), and the two labels' systems are mirror images, so
``x_bg = 1 - x_fg`` holds without renormalising. For K > 2 the labels are no longer tied
together, so the layer divides by ``sum_k x_k`` at the end to return a partition again.
Each step is a differentiable solve and the reweighting is differentiable (almost
everywhere), so gradients flow through the whole sequence.
"""

from __future__ import annotations

import torch


def irls_systems(
    edge_weights: torch.Tensor, unaries: torch.Tensor, x: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reweighted per-label systems at ``x: (B, K, H, W)`` as a random-walker batch of ``B K``
    two-unary problems: ``(B K, 2, H, W)`` edge weights and unaries ``[u^k_k, sum_(l != k) u^k_l]``,
    whose first output channel is label k's solution."""
    B, K, H, W = x.shape
    right = (x[..., :, :-1] - x[..., :, 1:]).abs()  # (B, K, H, W-1)
    down = (x[..., :-1, :] - x[..., 1:, :]).abs()  # (B, K, H-1, W)
    # The ignored last column / row keep their input weight (divided by 1).
    right = torch.nn.functional.pad(right, (0, 1), value=1.0).clamp_min(eps)  # (B, K, H, W)
    down = torch.nn.functional.pad(down, (0, 0, 0, 1), value=1.0).clamp_min(eps)  # (B, K, H, W)
    weights = torch.stack([edge_weights[:, 0:1] / right, edge_weights[:, 1:2] / down], dim=2)  # (B, K, 2, H, W)
    target = torch.eye(K, dtype=x.dtype, device=x.device).view(1, K, K, 1, 1)  # [k = l] at (., k, l)
    scaled = unaries.unsqueeze(1) / (x.unsqueeze(2) - target).abs().clamp_min(eps)  # (B, K, K, H, W): u^k_l
    own = torch.diagonal(scaled, dim1=1, dim2=2).movedim(-1, 1)  # (B, K, H, W): u^k_k
    others = scaled.sum(2) - own  # (B, K, H, W)
    pairs = torch.stack([own, others], dim=2)  # (B, K, 2, H, W)
    return weights.reshape(B * K, 2, H, W), pairs.reshape(B * K, 2, H, W)
