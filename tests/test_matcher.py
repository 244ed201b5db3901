"""SlotMatcher (Alg. 3): QP against a dense KKT oracle, permutation recovery, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.special import softmax

from cutslots.nn.matcher import SlotMatcher
from oracles import dense_kkt


def _constraints(k: int, form: str) -> tuple[np.ndarray, np.ndarray]:
    """Matching constraints written out by hand (variables: x row-major, then slacks)."""
    rows = np.kron(np.eye(k), np.ones((1, k)))  # sum_j x_ij
    cols = np.kron(np.ones((1, k)), np.eye(k))  # sum_i x_ij
    if form == "perfect":
        A = np.vstack([rows, cols[:-1]])  # one column constraint is implied by the others
    else:
        A = np.hstack([np.vstack([rows, cols]), np.eye(2 * k)])
    return A, np.ones(A.shape[0])


def _set_identity_mlp(matcher: SlotMatcher, shift: float = 100.0) -> None:
    """MLP weights making r = M t exactly: relu(t + shift) - shift with t + shift > 0."""
    first, second = matcher.mlp[0], matcher.mlp[2]
    with torch.no_grad():
        for layer, bias in ((first, shift), (second, -shift)):
            layer.weight.copy_(torch.eye(matcher.slot_dim))
            layer.bias.fill_(bias)


@pytest.mark.parametrize("form", ["perfect", "assignment"])
def test_matching_equals_dense_kkt_oracle(form: str) -> None:
    k, dim, gamma, temperature = 4, 5, 0.7, 0.3
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(2, k, dim)), rng.normal(size=(2, k, dim))
    matcher = SlotMatcher(k, dim, gamma=gamma, temperature=temperature, form=form).double()
    _set_identity_mlp(matcher)
    paired, m = matcher(torch.from_numpy(s), torch.from_numpy(t))

    A, b = _constraints(k, form)
    c = np.zeros((2, A.shape[1]))
    c[:, : k * k] = -np.einsum("bid,bjd->bij", s, t).reshape(2, -1)  # c_ij = -<s_i, t_j>
    x = dense_kkt(A, b, c, gamma)[:, : k * k].reshape(2, k, k)
    want_m = softmax(x / temperature, axis=-1)
    np.testing.assert_allclose(m.detach().numpy(), want_m, atol=1e-9)
    np.testing.assert_allclose(paired.detach().numpy(), want_m @ t, atol=1e-9)


def test_separated_slots_and_small_temperature_recover_the_permutation() -> None:
    k, dim = 5, 8
    rng = np.random.default_rng(1)
    s = 3.0 * np.linalg.qr(rng.normal(size=(dim, k)))[0].T  # orthogonal, well separated
    perm = rng.permutation(k)
    t = s[perm] + 0.05 * rng.normal(size=(k, dim))  # t_j is a noisy copy of s_perm[j]
    _, want = linear_sum_assignment(-(s @ t.T))  # scipy's Hungarian on the costs
    for form in ("perfect", "assignment"):
        matcher = SlotMatcher(k, dim, gamma=1.0, temperature=0.01, form=form)
        _, m = matcher(torch.tensor(s[None], dtype=torch.float32), torch.tensor(t[None], dtype=torch.float32))
        np.testing.assert_array_equal(m[0].argmax(-1).numpy(), want)
        np.testing.assert_array_equal(want[perm], np.arange(k))  # Hungarian found the truth
        assert float(m[0].max(-1).values.min()) > 0.99  # nearly hard


def test_gradients_reach_both_frames_through_the_qp() -> None:
    matcher = SlotMatcher(3, 4, gamma=0.5, temperature=0.5).double()
    s = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: matcher(a, b)[1], (s, t))


def test_bad_input_errors() -> None:
    matcher = SlotMatcher(3, 4, gamma=1.0, temperature=0.1)
    with pytest.raises(ValueError, match=r"s \(2, 3, 4\) and t \(2, 2, 4\)"):
        matcher(torch.zeros(2, 3, 4), torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match=r"s \(2, 3, 4\) and t \(2, 3, 5\)"):
        matcher(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"shape \(B, 3, 4\)"):
        matcher(torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(TypeError, match=r"t \(frame-2 slots\) must be a float tensor"):
        matcher(torch.zeros(1, 3, 4), torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        SlotMatcher(3, 4, gamma=1.0, temperature=0.0)
    with pytest.raises(ValueError, match="slot_dim must be a positive int"):
        SlotMatcher(3, 0, gamma=1.0, temperature=1.0)
    with pytest.raises(ValueError, match="gamma must be"):
        SlotMatcher(3, 4, gamma=-1.0, temperature=1.0)
    with pytest.raises(ValueError, match="form must be one of"):
        SlotMatcher(3, 4, gamma=1.0, temperature=1.0, form="greedy")  # type: ignore[arg-type]
