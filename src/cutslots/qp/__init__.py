"""The QP math core: no vision code lives here.

- :class:`EqualityQP`: generic ``min 1/2 gamma |z|^2 + c.z  s.t.  A z = b`` layer.
- :class:`GridCutQP`: the grid s-t cut QP (paper eq. 2), closed-form or sparse engine.
- :class:`MatchingQP`: relaxed bipartite matching (paper §3.2, App. C).
- :class:`RandomWalkerQP`: K-way random-walker diffusion on a weighted grid (batched PCG or
  a sparse factorization per image).

Inside ``torch.autocast`` every layer solves in float32 and casts back (:mod:`cutslots.qp.autocast`).
"""

from cutslots.qp.cut import CutSolution, GridCutQP
from cutslots.qp.equality_qp import EqualityQP, gamma_from_paper
from cutslots.qp.factor import DependentRowsError, cholmod_available, factorize_gram
from cutslots.qp.grid_graph import EDGE_CHANNELS, GridCutGraph, build_grid_cut_graph
from cutslots.qp.matching import MatchingQP, matching_constraints
from cutslots.qp.random_walker import (
    ConvergenceError,
    ConvergenceWarning,
    RandomWalkerQP,
    RandomWalkerStats,
    SolveStats,
)

__all__ = [
    "EDGE_CHANNELS",
    "ConvergenceError",
    "ConvergenceWarning",
    "CutSolution",
    "DependentRowsError",
    "EqualityQP",
    "GridCutGraph",
    "GridCutQP",
    "MatchingQP",
    "RandomWalkerQP",
    "RandomWalkerStats",
    "SolveStats",
    "build_grid_cut_graph",
    "cholmod_available",
    "factorize_gram",
    "gamma_from_paper",
    "matching_constraints",
]
