"""The QP layers under torch.autocast: a float32 solve of the float32-cast inputs, cast back."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from cutslots.qp import EqualityQP, GridCutQP, MatchingQP, RandomWalkerQP, build_grid_cut_graph

H, W = 5, 6


def _cut(engine: str) -> tuple[Callable[..., torch.Tensor], list[torch.Tensor]]:
    qp = GridCutQP(H, W, gamma=0.7, engine=engine, cache_dir=False)  # type: ignore[arg-type]

    def run(weights: torch.Tensor) -> torch.Tensor:
        s = qp(weights)  # every output, the lazily computed edge variables included
        return torch.cat([s.p.flatten(1), s.p_s[:, None], s.p_t[:, None], s.d.flatten(1)], 1)

    return run, [torch.rand(3, 6, H, W)]


def _matching() -> tuple[Callable[..., torch.Tensor], list[torch.Tensor]]:
    return MatchingQP(4, 3, form="assignment"), [torch.randn(2, 4, 3)]


def _equality() -> tuple[Callable[..., torch.Tensor], list[torch.Tensor]]:
    graph = build_grid_cut_graph(3, 3, "paper")
    return EqualityQP(graph.A, graph.b, 1.5, cache_dir=False), [torch.randn(2, graph.num_variables)]


def _random_walker(engine: str) -> tuple[Callable[..., torch.Tensor], list[torch.Tensor]]:
    qp = RandomWalkerQP(H, W, engine=engine)  # type: ignore[arg-type]
    return qp, [torch.rand(2, 2, H, W) * 3, torch.rand(2, 3, H, W) + 0.1]


LAYERS = {
    "cut_closed_form": lambda: _cut("closed_form"),
    "cut_sparse": lambda: _cut("sparse"),
    "matching": _matching,
    "equality": _equality,
    "random_walker_cg": lambda: _random_walker("cg"),
    "random_walker_sparse": lambda: _random_walker("sparse"),
}


def _grads(layer: Callable[..., torch.Tensor], inputs: list[torch.Tensor], autocast: torch.dtype | None) -> tuple:
    """The layer's output on ``inputs`` and the gradients of a fixed linear loss of it."""
    leaves = [x.detach().requires_grad_() for x in inputs]
    with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        out = layer(*leaves)
    weight = torch.linspace(-1, 1, out.numel()).view_as(out)
    (out.double() * weight).sum().backward()
    return out.detach(), [x.grad for x in leaves]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", LAYERS)
def test_half_inputs_under_autocast_solve_in_float32_and_cast_back(name: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    layer, inputs = LAYERS[name]()
    half = [x.to(dtype) for x in inputs]
    out, grads = _grads(layer, half, autocast=dtype)

    # The oracle: the float32 call on the float32-cast inputs, outside autocast, cast back.
    def reference(*xs: torch.Tensor) -> torch.Tensor:
        return layer(*(x.float() for x in xs)).to(dtype)

    expected, expected_grads = _grads(reference, half, autocast=None)
    assert out.dtype == dtype
    assert torch.equal(out, expected)
    for grad, want in zip(grads, expected_grads):
        assert grad is not None and want is not None
        assert grad.dtype == dtype
        assert torch.equal(grad, want)
        assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", LAYERS)
def test_float32_and_float64_under_autocast_are_unchanged(name: str) -> None:
    # Autocast would run the DCTs and preconditioner products in bfloat16: the layer turns it off.
    torch.manual_seed(0)
    layer, inputs = LAYERS[name]()
    for dtype in (torch.float32, torch.float64):
        typed = [x.to(dtype) for x in inputs]
        out, grads = _grads(layer, typed, autocast=torch.bfloat16)
        expected, expected_grads = _grads(layer, typed, autocast=None)
        assert out.dtype == dtype and torch.equal(out, expected)
        for grad, want in zip(grads, expected_grads):
            assert grad is not None and want is not None and torch.equal(grad, want)


@pytest.mark.parametrize("name", LAYERS)
def test_half_inputs_outside_autocast_are_rejected(name: str) -> None:
    layer, inputs = LAYERS[name]()
    with pytest.raises(TypeError, match=r"must be float32 or float64, got torch.bfloat16 \(.*inside torch.autocast"):
        layer(*(x.bfloat16() for x in inputs))
