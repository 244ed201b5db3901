"""The H x W grid s-t cut graph and its sparse equality constraints (paper, eq. 2).

Channel order of the per-pixel edge weights ``weights: (B, 6, H, W)`` used everywhere in
cutslots (``EDGE_CHANNELS``):

====  ==========  ===========================================
 ch   name        edge
====  ==========  ===========================================
 0    ``right``   pixel (i, j) -> (i, j+1)
 1    ``left``    pixel (i, j) -> (i, j-1)
 2    ``down``    pixel (i, j) -> (i+1, j)
 3    ``up``      pixel (i, j) -> (i-1, j)
 4    ``source``  s -> pixel (i, j)
 5    ``sink``    pixel (i, j) -> t
====  ==========  ===========================================

A neighbour edge that would leave the grid (``right`` in the last column, ...) does not
exist: its weight is ignored and its edge variable is reported as 0.

Two forms of the constraints are offered:

``"paper"`` (eq. 2 of the paper)
    every pixel has its (up to) 4 outgoing neighbour edges; ``p_s - p_t - s_st = b0``
    with a slack ``s_st`` (``b0 = 1`` by default).
``"released"`` (the authors' released code)
    neighbour edges leave interior pixels only (rows 1..H-2, columns 1..W-2);
    ``p_s - p_t = b0`` without slack (``b0 = 10`` there).

Every edge ``e = (u -> v)`` carries a flow-like variable ``d_e`` (cost ``w_e``) and a slack
``s_e`` tied by ``d_e - s_e - p_u + p_v = 0``. Variables are ordered
``z = [p (pixels row-major, then s, t), d (E), s (E), s_st (paper form only)]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

EDGE_CHANNELS = ("right", "left", "down", "up", "source", "sink")
CutForm = Literal["paper", "released"]
FORMS: tuple[str, ...] = ("paper", "released")
DEFAULT_B0 = {"paper": 1.0, "released": 10.0}

# (di, dj) of the neighbour each of the four grid channels points to.
_NEIGHBOUR_OFFSETS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def check_grid_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")


def edge_exists(height: int, width: int, form: CutForm = "paper") -> np.ndarray:
    """Boolean mask ``(6, H, W)``: which of the six per-pixel edges exist in the graph."""
    check_grid_size(height, width)
    check_form(form)
    ii, jj = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    exists = np.ones((6, height, width), dtype=bool)
    for ch, (di, dj) in enumerate(_NEIGHBOUR_OFFSETS):
        ni, nj = ii + di, jj + dj
        exists[ch] = (ni >= 0) & (ni < height) & (nj >= 0) & (nj < width)
    if form == "released":
        interior = (ii >= 1) & (ii <= height - 2) & (jj >= 1) & (jj <= width - 2)
        exists[:4] &= interior
    return exists


@dataclass(frozen=True)
class GridCutGraph:
    """Sparse constraint system ``A z = b`` of the grid cut QP.

    Attributes:
        height, width: grid size; ``num_pixels = height * width``.
        form: ``"paper"`` or ``"released"``.
        b0: right-hand side of the terminal constraint.
        edge_index: ``(6, H, W)`` int64, index of each edge among the E edges, -1 if absent.
        tail, head: ``(E,)`` vertex indices (pixels ``0..N-1``, s = N, t = N+1).
        A: ``(m, n)`` CSR constraint matrix, ``m = E + 1``.
        b: ``(m,)`` right-hand side.
    """

    height: int
    width: int
    form: str
    b0: float
    edge_index: np.ndarray
    tail: np.ndarray
    head: np.ndarray
    A: sp.csr_matrix
    b: np.ndarray

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    @property
    def num_edges(self) -> int:
        return int(self.tail.shape[0])

    @property
    def num_vertices(self) -> int:
        return self.num_pixels + 2

    @property
    def num_variables(self) -> int:
        return int(self.A.shape[1])

    @property
    def num_constraints(self) -> int:
        return int(self.A.shape[0])

    def d_offset(self) -> int:
        """Index of the first edge variable ``d`` in ``z``."""
        return self.num_vertices

    def cost_vector(self, weights: np.ndarray) -> np.ndarray:
        """Map per-pixel weights ``(B, 6, H, W)`` to the QP cost ``c: (B, n)``."""
        batch = weights.shape[0]
        c = np.zeros((batch, self.num_variables), dtype=weights.dtype)
        valid = self.edge_index >= 0
        start = self.d_offset()
        c[:, start + self.edge_index[valid]] = weights[:, valid]
        return c

    def edge_variables(self, z: np.ndarray) -> np.ndarray:
        """Gather ``d`` from a solution ``z: (B, n)`` into ``(B, 6, H, W)`` (0 for absent edges)."""
        out = np.zeros((z.shape[0], 6, self.height, self.width), dtype=z.dtype)
        valid = self.edge_index >= 0
        out[:, valid] = z[:, self.d_offset() + self.edge_index[valid]]
        return out


def build_grid_cut_graph(height: int, width: int, form: CutForm = "paper", b0: float | None = None) -> GridCutGraph:
    """Build the constraint system of the grid cut QP (see module docstring)."""
    exists = edge_exists(height, width, form)
    b0 = DEFAULT_B0[form] if b0 is None else float(b0)
    if not np.isfinite(b0):
        raise ValueError(f"b0 must be finite, got {b0!r}")
    n_pix = height * width
    s_vertex, t_vertex = n_pix, n_pix + 1
    pix = np.arange(n_pix).reshape(height, width)

    edge_index = np.full((6, height, width), -1, dtype=np.int64)
    tails, heads = [], []
    count = 0
    for ch in range(6):
        ii, jj = np.nonzero(exists[ch])
        k = ii.size
        edge_index[ch, ii, jj] = np.arange(count, count + k)
        count += k
        if ch < 4:
            di, dj = _NEIGHBOUR_OFFSETS[ch]
            tails.append(pix[ii, jj])
            heads.append(pix[ii + di, jj + dj])
        elif ch == 4:
            tails.append(np.full(k, s_vertex))
            heads.append(pix[ii, jj])
        else:
            tails.append(pix[ii, jj])
            heads.append(np.full(k, t_vertex))
    tail = np.concatenate(tails).astype(np.int64)
    head = np.concatenate(heads).astype(np.int64)

    n_vert, n_edge = n_pix + 2, count
    has_slack = form == "paper"
    n_var = n_vert + 2 * n_edge + int(has_slack)
    e = np.arange(n_edge)
    d_col, s_col = n_vert + e, n_vert + n_edge + e
    # Edge rows: d_e - s_e - p_tail + p_head = 0.
    rows = [e, e, e, e]
    cols = [d_col, s_col, tail, head]
    vals = [np.ones(n_edge), -np.ones(n_edge), -np.ones(n_edge), np.ones(n_edge)]
    # Terminal row: p_s - p_t (- s_st) = b0.
    term_row = n_edge
    rows += [np.array([term_row, term_row])]
    cols += [np.array([s_vertex, t_vertex])]
    vals += [np.array([1.0, -1.0])]
    if has_slack:
        rows += [np.array([term_row])]
        cols += [np.array([n_var - 1])]
        vals += [np.array([-1.0])]
    A = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_edge + 1, n_var),
    )
    b = np.zeros(n_edge + 1)
    b[term_row] = b0
    return GridCutGraph(height, width, form, b0, edge_index, tail, head, A, b)
