"""Differentiable slot matching between two frames (paper §3.2, Alg. 3, App. C).

Given slots ``s: (B, k, D)`` of frame 1 and ``t: (B, k, D)`` of frame 2:

1. costs ``c_ij = -<s_i, t_j>``: similar slots are cheap to match;
2. ``x = MatchingQP(c)``: the relaxed bipartite matching, ``x: (B, k, k)``;
3. ``M = softmax_j(x / temperature)``: the QP relaxation keeps equality constraints only, so
   ``x`` may be negative; the row softmax turns each row into a distribution over frame-2
   slots, and a small temperature makes it close to the hard matching;
4. paired slots ``r_i = MLP(sum_j M_ij t_j)``: frame 2's content in frame 1's slot order,
   transformed by a 2-layer MLP (width ``slot_dim``).

``gamma`` uses this package's QP convention ``1/2 gamma |x|^2`` (the paper's gamma times 2,
see :func:`cutslots.qp.gamma_from_paper`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cutslots.checks import check_positive_float, check_positive_int
from cutslots.qp.matching import MatchingForm, MatchingQP


class SlotMatcher(nn.Module):
    """forward(s (B, k, D), t (B, k, D)) -> paired slots r (B, k, D), matching M (B, k, k).

    ``M[b, i, j]`` is the weight with which slot ``i`` of frame 1 is paired with slot ``j`` of
    frame 2 (each row sums to 1). ``r[b, i]`` is the transformed frame-2 partner of slot ``i``.

    Args:
        num_slots: k, the number of slots of each frame.
        slot_dim: D.
        gamma: QP regulariser (> 0), package convention.
        temperature: softmax temperature (> 0) applied to the QP solution.
        form: ``"perfect"`` (paper eq. 7) or ``"assignment"`` (see :class:`MatchingQP`).
    """

    def __init__(
        self,
        num_slots: int,
        slot_dim: int,
        *,
        gamma: float,
        temperature: float,
        form: MatchingForm = "perfect",
    ) -> None:
        super().__init__()
        check_positive_int("slot_dim", slot_dim)
        temperature = check_positive_float("temperature", temperature)
        self.qp = MatchingQP(num_slots, gamma=gamma, form=form)  # validates num_slots, gamma, form
        self.num_slots = num_slots
        self.slot_dim = slot_dim
        self.temperature = temperature
        self.mlp = nn.Sequential(nn.Linear(slot_dim, slot_dim), nn.ReLU(), nn.Linear(slot_dim, slot_dim))

    def matching(self, s: Tensor, t: Tensor) -> Tensor:
        """Soft matching ``M: (B, k, k)`` of frame-1 slots ``s`` to frame-2 slots ``t``."""
        self._check_slots(s, t)
        cost = -torch.einsum("bid,bjd->bij", s, t)
        x = self.qp(cost)
        return torch.softmax(x / self.temperature, dim=-1)

    def forward(self, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        m = self.matching(s, t)
        return self.mlp(m @ t), m

    def _check_slots(self, s: Tensor, t: Tensor) -> None:
        for name, x in (("s (frame-1 slots)", s), ("t (frame-2 slots)", t)):
            if not isinstance(x, Tensor) or not x.is_floating_point():
                kind = f"dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
                raise TypeError(f"{name} must be a float tensor, got {kind}")
        expected = (self.num_slots, self.slot_dim)
        if s.dim() != 3 or t.dim() != 3 or s.shape != t.shape or tuple(s.shape[1:]) != expected:
            raise ValueError(
                f"frame-1 slots s and frame-2 slots t must both have shape (B, {expected[0]}, {expected[1]}), "
                f"got s {tuple(s.shape)} and t {tuple(t.shape)}"
            )

    def extra_repr(self) -> str:
        return f"num_slots={self.num_slots}, slot_dim={self.slot_dim}, temperature={self.temperature}"
