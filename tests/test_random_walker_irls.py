"""IRLS mode of RandomWalkerQP: each step against an independent SciPy solve of the reweighted
per-label systems, gradients through the sequence, and on a Boykov-Jolly problem the approach
to the exact cut (PyMaxflow via the cut-fidelity experiment's oracle)."""

import numpy as np
import pytest
import scipy.sparse.linalg as spl
import torch

from cutslots.experiments.cut_fidelity import (
    boykov_jolly_weights,
    cut_value,
    exact_min_cut,
    random_walker_inputs,
    seed_masks,
)
from cutslots.qp import RandomWalkerQP
from test_random_walker import energy_matrix, make_unaries, oracle

F64 = torch.float64


def reweighted_oracle(weights: torch.Tensor, unaries: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """One IRLS step from ``x0`` in NumPy/SciPy: label k solves
    ``(L_{w / max(eps, |dx0_k|)} + diag(sum_l u_l / max(eps, |x0_k - [k = l]|))) x_k = u_k / max(eps, |x0_k - 1|)``."""
    w, u, x = weights.numpy(), unaries.numpy(), x0.numpy()
    B, K, H, W = u.shape
    out = np.empty_like(x)
    for b in range(B):
        for k in range(K):
            wk = np.ones_like(w[b])  # the ignored last column / row
            wk[0, :, :-1] = w[b, 0, :, :-1] / np.maximum(eps, np.abs(x[b, k, :, :-1] - x[b, k, :, 1:]))
            wk[1, :-1, :] = w[b, 1, :-1, :] / np.maximum(eps, np.abs(x[b, k, :-1, :] - x[b, k, 1:, :]))
            scaled = [u[b, l] / np.maximum(eps, np.abs(x[b, k] - (k == l))) for l in range(K)]
            A = energy_matrix(wk, np.sum(scaled, axis=0))
            out[b, k] = spl.splu(A).solve(scaled[k].ravel()).reshape(H, W)
    return torch.from_numpy(out)


def problem(B: int = 2, K: int = 3, H: int = 5, W: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(B, 2, H, W, generator=gen, dtype=F64) * 3, make_unaries(B, K, H, W, gen)


@pytest.mark.parametrize("engine", ["cg", "sparse"])
def test_zero_iterations_is_the_plain_solve(engine):
    w, u = problem()
    irls = RandomWalkerQP(5, 4, engine=engine, mode="irls", iterations=0)(w, u)
    torch.testing.assert_close(irls, RandomWalkerQP(5, 4, engine=engine)(w, u), rtol=0, atol=0)


@pytest.mark.parametrize("engine", ["cg", "sparse"])
@pytest.mark.parametrize("K", [2, 3])
def test_each_step_solves_the_reweighted_per_label_systems(engine, K):
    w, u = problem(K=K)
    eps = 0.05
    x = oracle(w, u)[0]
    for _ in range(2):
        x = reweighted_oracle(w, u, x, eps)
    x = x / x.sum(1, keepdim=True)
    got = RandomWalkerQP(5, 4, engine=engine, mode="irls", iterations=2, eps=eps)(w, u)
    torch.testing.assert_close(got, x, rtol=0, atol=1e-6)


def test_two_labels_stay_complementary_without_renormalising():
    w, u = problem(K=2)
    x = reweighted_oracle(w, u, oracle(w, u)[0], eps=0.01)  # the per-label solves, not renormalised
    torch.testing.assert_close(x.sum(1), torch.ones(2, 5, 4, dtype=F64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("engine", ["cg", "sparse"])
def test_gradcheck_through_the_sequence_of_solves(engine):
    w, u = problem(B=1, K=3, H=3, W=4, seed=1)
    layer = RandomWalkerQP(3, 4, engine=engine, mode="irls", iterations=2, eps=0.05, tol=1e-12)
    assert torch.autograd.gradcheck(layer, (w.requires_grad_(), u.requires_grad_()), atol=1e-6)


def test_irls_approaches_the_exact_cut_on_a_boykov_jolly_problem():
    size = 24
    gen = np.random.default_rng(0)
    photo = np.zeros((size, size, 3))
    photo[4:18, 6:20] = [0.8, 0.3, 0.2]  # an object, then noise: the colour models overlap
    photo = np.clip(photo + gen.normal(0, 0.25, photo.shape), 0, 1)
    fg, bg = seed_masks(size)
    w, _ = boykov_jolly_weights(photo, fg, bg, lam=16.0, bins=4)
    exact, _ = exact_min_cut(w)
    min_cut = cut_value(w, exact)
    edges, unaries = random_walker_inputs(w[None])
    ratios = []
    for iterations in (0, 16):
        x = RandomWalkerQP(size, size, mode="irls", iterations=iterations)(edges, unaries)[0, 0].numpy()
        ratios.append(cut_value(w, x > 0.5) / min_cut)
    plain, irls = ratios
    assert plain > 1.03, ratios  # the quadratic relaxation pays for its smoothing here
    assert irls < 1.005, ratios  # IRLS reaches the min cut's value (1: max-flow's floor)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"mode": "l1"}, "mode"), ({"iterations": -1}, "iterations"), ({"eps": 0.0}, "eps"), ({"eps": 2.0}, "eps")],
)
def test_bad_irls_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomWalkerQP(3, 3, **kwargs)
