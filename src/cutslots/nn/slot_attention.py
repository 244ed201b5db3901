"""Slot Attention (Locatello et al., 2020), the iterative-attention baseline grouping.

Slots start as samples ``mu + exp(log_sigma) * noise`` of a learned diagonal Gaussian and are
refined ``iters`` times: the attention logits ``q(slots) . k(inputs) / sqrt(D)`` are normalised
with a softmax over *slots* (so slots compete for each input), each slot takes the
attention-weighted mean of the values, and a GRU cell plus a residual MLP update the slots.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cutslots.checks import check_positive_int


class SlotAttention(nn.Module):
    """Slot Attention module.

    forward(inputs (B, N, D), noise (B, K, D) | None) -> slots (B, K, D), attention (B, K, N).
    The returned attention is the last iteration's softmax over slots (each column sums to 1).
    """

    def __init__(
        self,
        num_slots: int,
        dim: int,
        *,
        iters: int = 3,
        hidden_dim: int = 128,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        check_positive_int("num_slots", num_slots)
        check_positive_int("dim", dim)
        check_positive_int("iters", iters)
        check_positive_int("hidden_dim", hidden_dim)
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.num_slots = num_slots
        self.dim = dim
        self.iters = iters
        self.eps = eps
        self.scale = dim**-0.5

        self.slots_mu = nn.Parameter(torch.empty(1, 1, dim))
        self.slots_log_sigma = nn.Parameter(torch.empty(1, 1, dim))
        nn.init.xavier_uniform_(self.slots_mu)
        nn.init.xavier_uniform_(self.slots_log_sigma)

        self.norm_inputs = nn.LayerNorm(dim)
        self.norm_slots = nn.LayerNorm(dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, dim))

    def forward(
        self, inputs: Tensor, noise: Tensor | None = None, diffuse: Callable[[Tensor], Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """inputs: (B, N, D); noise: (B, K, D) standard-normal draws for the slot init
        (default: ``num_slots`` fresh draws); ``diffuse``: maps every iteration's attention
        (B, K, N) to the attention the slots are updated with (e.g. a random walker over the
        input grid). Returns slots (B, K, D), attention (B, K, N)."""
        if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
            raise TypeError("inputs must be a floating-point torch.Tensor")
        if inputs.dim() != 3 or inputs.shape[-1] != self.dim or inputs.shape[1] < 1:
            raise ValueError(f"inputs must have shape (B, N, {self.dim}) with N >= 1, got {tuple(inputs.shape)}")
        batch = inputs.shape[0]
        if noise is None:
            noise = torch.randn(batch, self.num_slots, self.dim, device=inputs.device, dtype=inputs.dtype)
        elif not isinstance(noise, Tensor):
            raise TypeError(f"noise must be a torch.Tensor, got {type(noise).__name__}")
        elif noise.dim() != 3 or noise.shape[0] != batch or noise.shape[2] != self.dim:
            raise ValueError(f"noise must have shape ({batch}, K, {self.dim}), got {tuple(noise.shape)}")
        elif noise.shape[1] < 1:
            raise ValueError("noise must hold at least one slot (K >= 1)")
        num_slots = noise.shape[1]
        slots = self.slots_mu + self.slots_log_sigma.exp() * noise

        inputs = self.norm_inputs(inputs)
        keys = self.to_k(inputs)  # (B, N, D)
        values = self.to_v(inputs)  # (B, N, D)

        attention = inputs.new_empty(0)
        for _ in range(self.iters):
            slots_prev = slots
            queries = self.to_q(self.norm_slots(slots))  # (B, K, D)
            logits = torch.einsum("bkd,bnd->bkn", queries, keys) * self.scale
            attention = F.softmax(logits, dim=1)  # over slots: slots compete for inputs
            if diffuse is not None:
                attention = diffuse(attention)  # (B, K, N)
            # Weighted mean over inputs; eps keeps a slot that wins no input well-defined.
            weights = attention + self.eps
            weights = weights / weights.sum(dim=2, keepdim=True)
            updates = torch.einsum("bkn,bnd->bkd", weights, values)
            slots = self.gru(updates.reshape(-1, self.dim), slots_prev.reshape(-1, self.dim)).reshape(
                batch, num_slots, self.dim
            )
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attention
