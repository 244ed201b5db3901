"""Graph partitioning, and the bipartite matching instances Wilder, Dilkina & Tambe (AAAI 2019)
built from Cora, for :mod:`cutslots.experiments.cora_matching`.

``build_matching_instances`` (Wilder et al. §"Bipartite matching"): the graph is cut into
``num_parts`` parts (27 for Cora), each trimmed/padded to ``2 * side`` nodes (100) and split
into ``side`` left and ``side`` right nodes (50/50). The target is the ``side x side``
adjacency between the two sides and an edge's features are the concatenated bag-of-words of
its endpoints (2 x 1433 = 2866). Wilder et al. partitioned with METIS, which is not a
dependency here: ``partition_graph`` is recursive spectral bisection with Kernighan-Lin style
swap refinement instead (deterministic, balanced by construction, dense: meant for graphs of
a few thousand nodes), so the parts, and the numbers, are not the paper's. Their side split
(we read it as "maximise the edges crossing the sides") is approximated by
``split="maxcut"``: a spectral start plus pair swaps while they add crossing edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cutslots.data.cora import CitationGraph

SideSplit = Literal["maxcut", "random"]


@dataclass(frozen=True)
class MatchingInstances:
    """Bipartite matching instances cut from a citation graph.

    Attributes:
        left, right: ``(I, side, F)`` float32 node features (zeros for padding nodes).
        target: ``(I, side, side)`` float32, 1 where left node i and right node j are cited.
        left_nodes, right_nodes: ``(I, side)`` int64 graph node indices, -1 for padding.
    """

    left: np.ndarray
    right: np.ndarray
    target: np.ndarray
    left_nodes: np.ndarray
    right_nodes: np.ndarray

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def edge_features(self, k: int) -> np.ndarray:
        """Edge features of instance ``k``: ``(side * side, 2F)``, row ``i * side + j`` is
        ``[left_i, right_j]`` (the representation of Wilder et al.)."""
        n, m = self.target.shape[1:]
        return np.concatenate([np.repeat(self.left[k], m, axis=0), np.tile(self.right[k], (n, 1))], axis=1)


def _fiedler_vector(adj: np.ndarray) -> np.ndarray:
    """Spectral bisection coordinate of every node of a dense ``(n, n)`` graph: the second
    eigenvector of the regularised normalised adjacency, scaled by ``D^-1/2``.

    Regularising (adding ``tau / n`` to every entry, ``tau`` the mean degree; Amini et al. 2013)
    keeps a disconnected graph from giving a degenerate top eigenvalue. The known top
    eigenvector ``D^1/2 1`` is deflated, so the wanted one is the largest that remains (Lanczos
    for big graphs: a full dense eigensolve of Cora's 2708 nodes takes several seconds).
    """
    n = adj.shape[0]
    tau = max(adj.sum() / n, 1e-3)
    deg = adj.sum(1) + tau
    d_isqrt = 1.0 / np.sqrt(deg)
    top = np.sqrt(deg / deg.sum())
    mat = d_isqrt[:, None] * (adj + tau / n) * d_isqrt[None, :] - np.outer(top, top)
    if n <= 64:
        vec = np.linalg.eigh(mat)[1][:, -1]
    else:
        vec = spla.eigsh(mat, k=1, which="LA", v0=np.linspace(1.0, 2.0, n), tol=1e-8)[1][:, 0]
    return vec * d_isqrt


def _swap_refine(adj: np.ndarray, left: np.ndarray, maximize_cut: bool, candidates: int = 64) -> np.ndarray:
    """Kernighan-Lin style pair swaps between the sides of ``left: (n,)`` bool, best first,
    while a swap lowers (or with ``maximize_cut`` raises) the number of crossing edges.

    Moving v alone changes the crossing count by ``g_v`` = (neighbours on v's side) -
    (neighbours across); swapping u and v changes it by ``g_u + g_v + 2 A_uv``. Only the
    ``candidates`` best-ranked nodes of each side are paired, which keeps a step O(n).
    """
    sign = 1.0 if maximize_cut else -1.0
    side = np.where(left, 1.0, -1.0)
    field = adj @ side
    while True:
        g = sign * side * field
        li, ri = np.flatnonzero(side > 0), np.flatnonzero(side < 0)
        if li.size == 0 or ri.size == 0:
            break
        cl = li[np.argsort(-g[li], kind="stable")[:candidates]]
        cr = ri[np.argsort(-g[ri], kind="stable")[:candidates]]
        gain = g[cl][:, None] + g[cr][None, :] + 2 * sign * adj[np.ix_(cl, cr)]
        a, b = np.unravel_index(np.argmax(gain), gain.shape)
        if gain[a, b] <= 0:
            break
        u, v = cl[a], cr[b]
        side[u], side[v] = -1.0, 1.0
        field += 2 * (adj[:, v] - adj[:, u])
    return side > 0


def partition_graph(adjacency: sp.spmatrix, num_parts: int) -> np.ndarray:
    """Balanced ``num_parts``-way partition by recursive spectral bisection: ``(N,)`` part ids.

    A set meant for ``k`` parts is ordered by its Fiedler vector and cut so that the first
    ``round(n * (k // 2) / k)`` nodes go to ``k // 2`` parts and the rest to the others, then
    the cut is refined by pair swaps (``_swap_refine``). Part sizes therefore differ by at
    most one (100 or 101 for Cora's 2708 nodes in 27 parts).
    """
    n = adjacency.shape[0]
    if not isinstance(num_parts, (int, np.integer)) or isinstance(num_parts, bool) or not 1 <= num_parts <= n:
        raise ValueError(f"num_parts must be an integer in [1, {n}] (the number of nodes), got {num_parts!r}")
    dense = sp.csr_matrix(adjacency).toarray()
    parts = np.zeros(n, dtype=np.int64)

    def split(nodes: np.ndarray, k: int, first: int) -> None:
        if k == 1:
            parts[nodes] = first
            return
        k1 = k // 2
        sub = dense[np.ix_(nodes, nodes)]
        first_half = np.zeros(nodes.size, dtype=bool)
        first_half[np.argsort(_fiedler_vector(sub), kind="stable")[: round(nodes.size * k1 / k)]] = True
        first_half = _swap_refine(sub, first_half, maximize_cut=False)
        split(nodes[first_half], k1, first)
        split(nodes[~first_half], k - k1, first + k1)

    split(np.arange(n), num_parts, 0)
    return parts


def _maxcut_sides(adj: np.ndarray) -> np.ndarray:
    """Boolean ``(n,)`` "is left" for a balanced split with many crossing edges: the order of
    the Laplacian's top eigenvector (the spectral max-cut heuristic), refined by swaps."""
    n = adj.shape[0]
    vec = np.linalg.eigh(np.diag(adj.sum(1)) - adj)[1][:, -1]
    left = np.zeros(n, dtype=bool)
    left[np.argsort(vec, kind="stable")[: (n + 1) // 2]] = True
    return _swap_refine(adj, left, maximize_cut=True)


def build_matching_instances(
    graph: CitationGraph,
    num_parts: int = 27,
    side: int = 50,
    split: SideSplit = "maxcut",
    seed: int = 0,
) -> MatchingInstances:
    """Cut ``graph`` into ``num_parts`` bipartite matching instances of ``side x side`` nodes.

    Parts bigger than ``2 * side`` keep the ``2 * side`` nodes with the most edges inside the
    part (ties: lower index); smaller ones are padded with feature-less, edge-less nodes.
    ``split="maxcut"`` splits a part's nodes into two halves with many crossing edges,
    ``"random"`` uniformly at random (``seed``); padding fills the remaining slots.
    """
    if not isinstance(side, (int, np.integer)) or isinstance(side, bool) or side < 1:
        raise ValueError(f"side must be an integer >= 1, got {side!r}")
    if split not in ("maxcut", "random"):
        raise ValueError(f"split must be 'maxcut' or 'random', got {split!r}")
    adjacency = sp.csr_matrix(graph.adjacency)
    parts = partition_graph(adjacency, num_parts)
    rng = np.random.default_rng(seed)
    left_nodes = np.full((num_parts, side), -1, dtype=np.int64)
    right_nodes = np.full((num_parts, side), -1, dtype=np.int64)
    for p in range(num_parts):
        nodes = np.flatnonzero(parts == p)
        inner = adjacency[nodes][:, nodes].toarray()
        if nodes.size > 2 * side:
            keep = np.sort(np.argsort(-inner.sum(1), kind="stable")[: 2 * side])
            nodes, inner = nodes[keep], inner[np.ix_(keep, keep)]
        if split == "maxcut":
            is_left = _maxcut_sides(inner)
        else:
            is_left = np.zeros(nodes.size, dtype=bool)
            is_left[rng.permutation(nodes.size)[: (nodes.size + 1) // 2]] = True
        lefts, rights = nodes[is_left], nodes[~is_left]
        left_nodes[p, : lefts.size] = lefts
        right_nodes[p, : rights.size] = rights

    def gather(idx: np.ndarray) -> np.ndarray:
        feats = graph.features[np.maximum(idx, 0)].astype(np.float32)
        feats[idx < 0] = 0.0
        return feats

    dense_rows = adjacency[np.maximum(left_nodes, 0).ravel()].toarray().reshape(num_parts, side, -1)
    target = np.take_along_axis(dense_rows, np.maximum(right_nodes, 0)[:, None, :].repeat(side, 1), axis=2)
    target[(left_nodes < 0)[:, :, None] | (right_nodes < 0)[:, None, :]] = 0.0
    target = target.astype(np.float32)
    return MatchingInstances(gather(left_nodes), gather(right_nodes), target, left_nodes, right_nodes)
