"""Tests for cutslots.nn.slot_attention.SlotAttention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cutslots.nn.slot_attention import SlotAttention


def _make(num_slots: int = 4, dim: int = 8, iters: int = 3, seed: int = 0) -> SlotAttention:
    torch.manual_seed(seed)
    return SlotAttention(num_slots, dim, iters=iters, hidden_dim=16).double()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _layer_norm(x: np.ndarray, norm: torch.nn.LayerNorm) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)  # biased, as LayerNorm's definition
    return (x - mean) / np.sqrt(var + norm.eps) * _np(norm.weight) + _np(norm.bias)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _reference_one_iteration(sa: SlotAttention, inputs: np.ndarray, noise: np.ndarray):
    """Slot Attention with one iteration written from the paper's Algorithm 1 and the GRU
    equations of the PyTorch docs, in numpy. inputs (N, D), noise (K, D)."""
    dim = inputs.shape[1]
    slots = _np(sa.slots_mu)[0] + np.exp(_np(sa.slots_log_sigma)[0]) * noise
    x = _layer_norm(inputs, sa.norm_inputs)
    k, v = x @ _np(sa.to_k.weight).T, x @ _np(sa.to_v.weight).T
    q = _layer_norm(slots, sa.norm_slots) @ _np(sa.to_q.weight).T
    logits = q @ k.T / np.sqrt(dim)  # (K, N)
    e = np.exp(logits - logits.max(0, keepdims=True))
    attn = e / e.sum(0, keepdims=True)
    w = attn + sa.eps
    w = w / w.sum(1, keepdims=True)
    updates = w @ v
    w_ir, w_iz, w_in = np.split(_np(sa.gru.weight_ih), 3)
    w_hr, w_hz, w_hn = np.split(_np(sa.gru.weight_hh), 3)
    b_ir, b_iz, b_in = np.split(_np(sa.gru.bias_ih), 3)
    b_hr, b_hz, b_hn = np.split(_np(sa.gru.bias_hh), 3)
    h = slots
    r = _sigmoid(updates @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
    z = _sigmoid(updates @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
    n = np.tanh(updates @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
    h = (1 - z) * n + z * h
    lin1, lin2 = sa.mlp[0], sa.mlp[2]
    hidden = np.maximum(_layer_norm(h, sa.norm_mlp) @ _np(lin1.weight).T + _np(lin1.bias), 0)
    return h + hidden @ _np(lin2.weight).T + _np(lin2.bias), attn


def test_one_iteration_matches_numpy_reference() -> None:
    sa = _make(num_slots=3, dim=6, iters=1)
    with torch.no_grad():  # non-trivial norms and biases so that every term shows
        for p in sa.parameters():
            p.add_(0.1 * torch.randn_like(p))
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randn(2, 10, 6, generator=gen, dtype=torch.float64)
    noise = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64)
    slots, attn = sa(inputs, noise)
    for b in range(2):
        ref_slots, ref_attn = _reference_one_iteration(sa, _np(inputs[b]), _np(noise[b]))
        np.testing.assert_allclose(_np(slots[b]), ref_slots, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(_np(attn[b]), ref_attn, rtol=1e-10, atol=1e-12)


def test_shapes_and_default_noise() -> None:
    sa = _make(num_slots=5, dim=8)
    slots, attn = sa(torch.randn(3, 12, 8, dtype=torch.float64))
    assert slots.shape == (3, 5, 8)
    assert attn.shape == (3, 5, 12)
    # The number of slots can change at call time through the noise.
    slots, attn = sa(torch.randn(3, 12, 8, dtype=torch.float64), torch.randn(3, 2, 8).double())
    assert slots.shape == (3, 2, 8) and attn.shape == (3, 2, 12)


def test_attention_is_a_distribution_over_slots() -> None:
    sa = _make()
    _, attn = sa(torch.randn(2, 20, 8, dtype=torch.float64))
    assert bool((attn >= 0).all())
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(2, 20, dtype=torch.float64))


def test_permuting_init_noise_permutes_slots_and_attention() -> None:
    sa = _make()
    gen = torch.Generator().manual_seed(3)
    inputs = torch.randn(2, 16, 8, generator=gen, dtype=torch.float64)
    noise = torch.randn(2, 4, 8, generator=gen, dtype=torch.float64)
    perm = torch.tensor([2, 0, 3, 1])
    slots, attn = sa(inputs, noise)
    slots_p, attn_p = sa(inputs, noise[:, perm])
    torch.testing.assert_close(slots_p, slots[:, perm])
    torch.testing.assert_close(attn_p, attn[:, perm])
    # Slots really differ, so the check above is not vacuous.
    assert not torch.allclose(slots[:, 0], slots[:, 1])


def test_permuting_inputs_leaves_slots_unchanged() -> None:
    sa = _make()
    gen = torch.Generator().manual_seed(4)
    inputs = torch.randn(1, 16, 8, generator=gen, dtype=torch.float64)
    noise = torch.randn(1, 4, 8, generator=gen, dtype=torch.float64)
    perm = torch.randperm(16, generator=gen)
    slots, attn = sa(inputs, noise)
    slots_p, attn_p = sa(inputs[:, perm], noise)
    torch.testing.assert_close(slots_p, slots)
    torch.testing.assert_close(attn_p, attn[:, :, perm])


def test_gradient_reaches_every_parameter() -> None:
    sa = _make(iters=2)
    slots, attn = sa(torch.randn(2, 10, 8, dtype=torch.float64))
    (slots.square().sum() + (attn * torch.randn_like(attn)).sum()).backward()
    for name, p in sa.named_parameters():
        assert p.grad is not None, name
        assert bool(p.grad.abs().sum() > 0), name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_slots": 0, "dim": 8}, "num_slots"),
        ({"num_slots": 2, "dim": 8, "iters": 0}, "iters"),
        ({"num_slots": 2, "dim": 8, "eps": 0.0}, "eps"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SlotAttention(**kwargs)


def test_bad_inputs() -> None:
    sa = _make(dim=8)
    with pytest.raises(ValueError, match="inputs"):
        sa(torch.randn(2, 10, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="inputs"):
        sa(torch.randn(10, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="inputs"):
        sa(torch.ones(2, 10, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="noise"):
        sa(torch.randn(2, 10, 8, dtype=torch.float64), torch.randn(3, 4, 8).double())
    with pytest.raises(ValueError, match="noise"):
        sa(torch.randn(2, 10, 8, dtype=torch.float64), torch.randn(2, 0, 8).double())
