import numpy as np
import pytest
import torch

from cutslots.qp import MatchingQP, matching_constraints
from oracles import dense_kkt


@pytest.mark.parametrize("form,n,m", [("perfect", 1, 1), ("perfect", 4, 4), ("assignment", 3, 3), ("assignment", 2, 5)])
def test_matches_dense_kkt(form, n, m):
    gamma = 0.4
    cost = np.random.default_rng(n * m).normal(size=(3, n, m))
    A, b = matching_constraints(n, m, form)
    c = np.zeros((3, A.shape[1]))
    c[:, : n * m] = cost.reshape(3, -1)
    want = dense_kkt(A.toarray(), b, c, gamma)[:, : n * m].reshape(3, n, m)
    got = MatchingQP(n, m, gamma=gamma, form=form)(torch.from_numpy(cost)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_perfect_form_rows_and_columns_sum_to_one():
    x = MatchingQP(5, gamma=0.2, form="perfect")(torch.randn(4, 5, 5, dtype=torch.float64))
    torch.testing.assert_close(x.sum(-1), torch.ones(4, 5, dtype=torch.float64))
    torch.testing.assert_close(x.sum(-2), torch.ones(4, 5, dtype=torch.float64))


def test_perfect_form_hand_computed_2x2():
    # x = [[a, 1-a], [1-a, a]]; minimise 1/2 g (2a^2 + 2(1-a)^2) + c11 a + c12 (1-a) + c21 (1-a) + c22 a
    # => a = 1/2 - (c11 + c22 - c12 - c21) / (4 g).
    cost = torch.tensor([[[1.0, -1.0], [0.5, 2.0]]], dtype=torch.float64)
    g = 5.0
    a = 0.5 - (1.0 + 2.0 + 1.0 - 0.5) / (4 * g)
    want = torch.tensor([[[a, 1 - a], [1 - a, a]]], dtype=torch.float64)
    torch.testing.assert_close(MatchingQP(2, gamma=g)(cost), want)


def test_small_gamma_recovers_the_optimal_assignment_for_clear_costs():
    # With a clearly separated permutation, the relaxed x is largest on the LP's matching.
    perm = torch.tensor([2, 0, 3, 1])
    cost = torch.zeros(1, 4, 4, dtype=torch.float64)
    cost[0, torch.arange(4), perm] = -1.0
    for form in ("perfect", "assignment"):
        x = MatchingQP(4, gamma=0.05, form=form)(cost)
        assert torch.equal(x[0].argmax(-1), perm)


def test_gradcheck_both_forms():
    for form in ("perfect", "assignment"):
        cost = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(MatchingQP(3, gamma=0.5, form=form), (cost,))


def test_bad_input_errors():
    with pytest.raises(ValueError, match="needs a square problem"):
        MatchingQP(3, 4, form="perfect")
    with pytest.raises(ValueError, match="form must be one of"):
        MatchingQP(3, form="greedy")
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        MatchingQP(0)
    qp = MatchingQP(3)
    with pytest.raises(ValueError, match=r"cost must have shape \(B, 3, 3\)"):
        qp(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"cost must have shape \(\.\.\., 3, 3\)"):
        qp(torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="cost contains NaN"):
        qp(torch.full((1, 3, 3), float("nan")))
