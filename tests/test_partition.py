"""Tests for the cut partition layers (cutslots.nn.partition)."""

from __future__ import annotations

import maxflow
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cutslots import checks
from cutslots.nn.partition import BackgroundKPartition, KPartition, PartitionOutput
from cutslots.qp import GridCutQP

H, W, C = 5, 6, 3


def _features(batch: int = 2, seed: int = 0) -> Tensor:
    return torch.randn(batch, C, H, W, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _layer(cls: type[nn.Module] = KPartition, k: int = 3, seed: int = 0, **kw: object) -> nn.Module:
    torch.manual_seed(seed)
    kw.setdefault("hidden", 8)
    return cls(C, k, height=H, width=W, **{"gamma": 0.5, **kw}).double()


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _oracle_weights(layer: nn.Module, features: Tensor, activation: str, per_part: int = 6) -> np.ndarray:
    """The documented CNN rebuilt from F.conv2d: (B, n, per_part, H, W) with cut i in channels
    6i..6i+5 (per_part=6), or one unary channel per part for the ablations (per_part=1)."""
    convs = [m for m in layer.cuts.cnn if isinstance(m, nn.Conv2d)]
    x = features
    for i, conv in enumerate(convs):
        x = F.conv2d(x, conv.weight, conv.bias, padding=1)
        if i < len(convs) - 1:
            x = torch.relu(x)
    x = {"softplus": F.softplus, "relu": torch.relu, "none": lambda t: t}[activation](x)
    b, c, h, w = x.shape
    return x.detach().numpy().reshape(b, c // per_part, per_part, h, w)


def _oracle_values(layer: nn.Module, features: Tensor) -> np.ndarray:
    """features, or the per-pixel MLP applied with numpy: (B, C, H, W)."""
    x = features.numpy()
    if layer.feature_mlp is None:
        return x
    first, last = layer.feature_mlp[0], layer.feature_mlp[2]
    w1, b1 = first.weight.detach().numpy()[:, :, 0, 0], first.bias.detach().numpy()
    w2, b2 = last.weight.detach().numpy()[:, :, 0, 0], last.bias.detach().numpy()
    hidden = np.maximum(np.einsum("oc,bchw->bohw", w1, x) + b1[:, None, None], 0)
    return np.einsum("co,bohw->bchw", w2, hidden) + b2[:, None, None]


@pytest.mark.parametrize("cls", [KPartition, BackgroundKPartition])
@pytest.mark.parametrize("feature_mlp", [False, True])
def test_masks_partition_pixels_and_mask_the_features(cls: type[nn.Module], feature_mlp: bool) -> None:
    layer = _layer(cls, k=4, feature_mlp=feature_mlp)
    features = _features()
    with torch.no_grad():
        out = layer(features)
    assert isinstance(out, PartitionOutput)
    n = 5 if cls is BackgroundKPartition else 4
    assert out.masks.shape == (2, 4, H, W)
    assert out.features.shape == (2, 4, C, H, W)
    assert out.p.shape == (2, n, H, W) and out.weights.shape == (2, n, 6, H, W)
    masks = out.masks.numpy()
    assert masks.min() >= 0 and masks.max() <= 1
    np.testing.assert_allclose(masks.sum(1), 1.0, atol=1e-12)
    values = _oracle_values(layer, features)
    np.testing.assert_allclose(out.features.numpy(), masks[:, :, None] * values[:, None], atol=1e-12)
    # A partition of unity splits the features without loss: the parts add back up.
    np.testing.assert_allclose(out.features.sum(1).numpy(), values, atol=1e-12)


@pytest.mark.parametrize(("activation", "form"), [("softplus", "paper"), ("relu", "paper"), ("none", "released")])
def test_p_equals_generic_solver_on_the_cnn_weights(activation: str, form: str) -> None:
    engine = "auto" if form == "paper" else "sparse"
    layer = _layer(k=3, weight_activation=activation, form=form, engine=engine)
    features = _features()
    with torch.no_grad():
        out = layer(features)
    weights = _oracle_weights(layer, features, activation)
    np.testing.assert_allclose(out.weights.numpy(), weights, atol=1e-12)
    if activation != "none":
        assert weights.min() >= 0
    oracle = GridCutQP(H, W, 0.5, form=form, engine="sparse", backend="scipy", cache_dir=False)
    p = oracle(torch.from_numpy(weights.reshape(6, 6, H, W))).p.numpy().reshape(2, 3, H, W)
    np.testing.assert_allclose(out.p.numpy(), p, atol=1e-9)
    np.testing.assert_allclose(out.masks.numpy(), _softmax(p / 0.5, axis=1), atol=1e-9)


def test_temperature_limits_one_hot_and_uniform() -> None:
    layer = _layer(k=4)
    features = _features()
    with torch.no_grad():
        p = layer(features).p
    top2 = p.topk(2, dim=1).values
    gap = float((top2[:, 0] - top2[:, 1]).min())
    assert gap > 0
    spread = float(p.max() - p.min())
    for temperature, expected in [
        (gap / 60, F.one_hot(p.argmax(1), 4).permute(0, 3, 1, 2).double()),
        (spread * 1e7, torch.full_like(p, 0.25)),
    ]:
        other = KPartition(C, 4, height=H, width=W, gamma=0.5, temperature=temperature, hidden=8).double()
        other.load_state_dict(layer.state_dict())
        with torch.no_grad():
            out = other(features)
        torch.testing.assert_close(out.p, p, rtol=0, atol=0)
        torch.testing.assert_close(out.masks, expected, rtol=0, atol=1e-7)


def test_gamma_and_temperature_scale_the_logits_alike() -> None:
    # p = F(w) / gamma + c, with c the same for every cut: masks depend on gamma * temperature.
    features = _features()
    outs = {}
    for gamma, temperature in [(2.0, 0.25), (1.0, 0.5), (1.0, 0.25)]:
        layer = _layer(k=3, gamma=gamma, temperature=temperature)
        with torch.no_grad():
            outs[gamma, temperature] = layer(features)
    a, b, c = outs[2.0, 0.25], outs[1.0, 0.5], outs[1.0, 0.25]
    assert (a.p - b.p).abs().max() > 1e-3
    torch.testing.assert_close(a.masks, b.masks, rtol=0, atol=1e-12)
    assert (a.masks - c.masks).abs().max() > 1e-4


def test_background_masks_are_the_product_of_two_softmaxes() -> None:
    layer = _layer(BackgroundKPartition, k=4, temperature=0.7, bg_temperature=0.05)
    with torch.no_grad():
        out = layer(_features())
    p = out.p.numpy()
    bg_fg = _softmax(p[:, :2] / 0.05, axis=1)
    objects = _softmax(p[:, 2:] / 0.7, axis=1)
    expected = np.concatenate([bg_fg[:, :1], bg_fg[:, 1:] * objects], axis=1)
    np.testing.assert_allclose(out.masks.numpy(), expected, atol=1e-12)
    # The two temperatures are not interchangeable: swapping them changes the masks.
    bg_fg_swapped = _softmax(p[:, :2] / 0.7, axis=1)
    objects_swapped = _softmax(p[:, 2:] / 0.05, axis=1)
    swapped = np.concatenate([bg_fg_swapped[:, :1], bg_fg_swapped[:, 1:] * objects_swapped], 1)
    assert np.abs(out.masks.numpy() - swapped).max() > 1e-3


def test_defaults_follow_the_paper_temperatures() -> None:
    layer = BackgroundKPartition(C, 3, height=H, width=W, gamma=1.0)
    assert (layer.temperature, layer.bg_temperature) == (0.5, 0.1)
    assert KPartition(C, 3, height=H, width=W, gamma=1.0).temperature == 0.5
    assert layer.cuts.weight_activation == "softplus"


def _configure_unary_cuts(layer: KPartition, strength: float, pairwise: float) -> None:
    """Hand-set CNN: with u the single feature channel (0/1), cut 0 gets source a*u and sink
    a*(1-u), cut 1 the reverse, and every neighbour edge the constant ``pairwise``."""
    conv1, conv2, conv3 = (m for m in layer.cuts.cnn if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        for conv in (conv1, conv2, conv3):
            conv.weight.zero_()
            conv.bias.zero_()
        conv1.weight[0, 0, 1, 1], conv1.weight[1, 0, 1, 1], conv1.bias[1] = 1.0, -1.0, 1.0  # u, 1-u
        conv2.weight[0, 0, 1, 1] = conv2.weight[1, 1, 1, 1] = 1.0
        conv3.weight[4, 0, 1, 1] = conv3.weight[5, 1, 1, 1] = strength
        conv3.weight[10, 1, 1, 1] = conv3.weight[11, 0, 1, 1] = strength
        conv3.bias[[0, 1, 2, 3, 6, 7, 8, 9]] = pairwise


def test_relaxed_partition_agrees_with_exact_min_cut_on_a_noisy_region() -> None:
    h, w, strength, pairwise = 10, 10, 1.0, 1.0
    u = np.zeros((h, w))
    u[:, :5] = 1.0  # region R: the left half
    u[2, 2] = u[6, 3] = 0.0  # isolated noise inside R ...
    u[3, 7] = u[7, 6] = 1.0  # ... and outside it
    layer = KPartition(1, 2, height=h, width=w, gamma=1.0, hidden=2, weight_activation="relu").double()
    _configure_unary_cuts(layer, strength, pairwise)
    with torch.no_grad():
        out = layer(torch.from_numpy(u)[None, None])
    np.testing.assert_allclose(out.weights[0, 0, 4].numpy(), strength * u)  # source of cut 0
    np.testing.assert_allclose(out.weights[0, 1, 4].numpy(), strength * (1 - u))

    # Oracle: the exact min cut of cut 0's graph (Boykov-Kolmogorov max-flow).
    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes((h, w))
    right_down = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0]])
    graph.add_grid_edges(nodes, weights=pairwise, structure=right_down, symmetric=True)
    graph.add_grid_tedges(nodes, strength * u, strength * (1 - u))
    graph.maxflow()
    source_side = ~graph.get_grid_segments(nodes)
    assert source_side[:, :5].all() and not source_side[:, 5:].any()  # the noise is smoothed out
    np.testing.assert_array_equal(out.masks[0].argmax(0).numpy() == 0, source_side)


@pytest.mark.parametrize("cls", [KPartition, BackgroundKPartition])
def test_images_in_a_batch_do_not_interact(cls: type[nn.Module]) -> None:
    layer = _layer(cls, k=3)
    features = _features(batch=3)
    with torch.no_grad():
        together = layer(features)
        for i in range(3):
            alone = layer(features[i : i + 1])
            torch.testing.assert_close(together.masks[i : i + 1], alone.masks, rtol=0, atol=1e-12)
            torch.testing.assert_close(together.p[i : i + 1], alone.p, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", [KPartition, BackgroundKPartition])
def test_gradients_reach_every_parameter_and_the_features(cls: type[nn.Module]) -> None:
    layer = _layer(cls, k=3, feature_mlp=True)
    features = _features().requires_grad_(True)
    out = layer(features)
    target = torch.randn(out.features.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (out.features * target).sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and float(param.grad.abs().max()) > 0, name
    assert float(features.grad.abs().max()) > 0


@pytest.mark.parametrize(
    ("features", "error", "match"),
    [
        (torch.randn(1, 2, H, W), ValueError, rf"features.*\(B, {C}, {H}, {W}\).*\(1, 2, {H}, {W}\)"),
        (torch.randn(1, C, W, H), ValueError, rf"features.*\(1, {C}, {W}, {H}\)"),
        (torch.randn(C, H, W), ValueError, "features.*shape"),
        (torch.randn(0, C, H, W), ValueError, "features.*B >= 1"),
        (torch.ones(1, C, H, W, dtype=torch.int64), TypeError, "features.*int64"),
        (np.zeros((1, C, H, W)), TypeError, "features.*ndarray"),
    ],
)
@pytest.mark.parametrize("cls", [KPartition, BackgroundKPartition])
def test_bad_features(cls: type[nn.Module], features: object, error: type[Exception], match: str) -> None:
    layer = cls(C, 3, height=H, width=W, gamma=1.0, hidden=4)
    with pytest.raises(error, match=match):
        layer(features)


@pytest.mark.parametrize("cls", [KPartition, BackgroundKPartition])
def test_finiteness_is_checked_in_debug_mode_only(cls: type[nn.Module], monkeypatch: pytest.MonkeyPatch) -> None:
    features = torch.randn(1, C, H, W)
    features[0, 0, 1, 1] = float("nan")
    cut = cls(C, 3, height=H, width=W, gamma=1.0, hidden=4)
    identity = cls(C, 3, height=H, width=W, relaxation="identity", hidden=4)
    with torch.no_grad():
        assert torch.isnan(identity(features).masks).any()  # no full pass on the hot path
    with pytest.raises(ValueError, match="weights contains NaN"):  # the QP core's own cheap check
        cut(features)
    monkeypatch.setattr(checks, "_debug", False)  # restored after the test
    checks.set_debug(True)
    for layer in (cut, identity):
        with pytest.raises(ValueError, match="features contains NaN"):
            layer(features)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_parts": 0}, ValueError, "num_parts"),
        ({"in_channels": 0}, ValueError, "in_channels"),
        ({"hidden": 0}, ValueError, "hidden"),
        ({"height": 0}, ValueError, "height"),
        ({"gamma": 0.0}, ValueError, "gamma"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"temperature": True}, ValueError, "temperature"),
        ({"weight_activation": "sigmoid"}, ValueError, "weight_activation"),
        ({"feature_mlp": "yes"}, TypeError, "feature_mlp"),
        ({"form": "released", "engine": "closed_form"}, ValueError, "engine"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    args = {"in_channels": C, "num_parts": 3, "height": H, "width": W, "gamma": 1.0, **kwargs}
    with pytest.raises(error, match=match):
        KPartition(**args)


def test_background_partition_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_parts must be >= 2"):
        BackgroundKPartition(C, 1, height=H, width=W, gamma=1.0)
    with pytest.raises(ValueError, match="bg_temperature"):
        BackgroundKPartition(C, 3, height=H, width=W, gamma=1.0, bg_temperature=-0.1)


# ------------------------------------------------------------------ ablations of the cut


def _grid_laplacian(h: int, w: int) -> np.ndarray:
    """Dense free-boundary 4-neighbour grid Laplacian (h w, h w), row-major pixels."""
    n = h * w
    lap = np.zeros((n, n))
    for i in range(h):
        for j in range(w):
            for di, dj in ((0, 1), (1, 0)):
                if i + di < h and j + dj < w:
                    a, b = i * w + j, (i + di) * w + j + dj
                    lap[a, a] += 1
                    lap[b, b] += 1
                    lap[a, b] -= 1
                    lap[b, a] -= 1
    return lap


@pytest.mark.parametrize("cls", [KPartition, BackgroundKPartition])
@pytest.mark.parametrize("relaxation", ["identity", "green_filter"])
def test_ablations_score_parts_with_the_cnn_output_or_its_fixed_grid_filter(cls, relaxation) -> None:
    layer = _layer(cls, k=3, relaxation=relaxation)
    features = _features()
    with torch.no_grad():
        out = layer(features)
    n = 4 if cls is BackgroundKPartition else 3
    u = _oracle_weights(layer, features, "none", per_part=1)  # (B, n, 1, H, W)
    assert u.shape == (2, n, 1, H, W)
    np.testing.assert_allclose(out.weights.numpy(), u, atol=1e-12)
    if relaxation == "identity":
        want = u[:, :, 0]
    else:  # dense solve (L_grid + 2 I) p = u per part
        system = _grid_laplacian(H, W) + 2 * np.eye(H * W)
        want = np.linalg.solve(system, u.reshape(2 * n, H * W).T).T.reshape(2, n, H, W)
    np.testing.assert_allclose(out.p.numpy(), want, atol=1e-6)  # the DCT runs in float32
    masks = out.masks.numpy()
    np.testing.assert_allclose(masks.sum(1), 1.0, atol=1e-12)


def test_green_filter_gradient_is_the_filter_transpose() -> None:
    layer = _layer(KPartition, k=2, relaxation="green_filter")
    features = _features().requires_grad_(True)
    out = layer(features)
    grad = torch.randn_like(out.p)
    (out.p * grad).sum().backward()
    # The filter is symmetric: d<p, g>/du = (L + 2I)^-1 g, pulled back through the CNN.
    system = _grid_laplacian(H, W) + 2 * np.eye(H * W)
    du = np.linalg.solve(system, grad.detach().numpy().reshape(-1, H * W).T).T.reshape(out.p.shape)
    u = layer.cuts.cnn(features)
    (want,) = torch.autograd.grad(u, features, torch.from_numpy(du))
    np.testing.assert_allclose(features.grad.numpy(), want.numpy(), atol=1e-6)


def test_init_scale_multiplies_the_last_layer_of_the_default_initialisation() -> None:
    base, scaled = _layer(k=2), _layer(k=2, init_scale=4.0)  # same seed
    first, last = (
        [m for m in base.cuts.cnn if isinstance(m, nn.Conv2d)],
        [m for m in scaled.cuts.cnn if isinstance(m, nn.Conv2d)],
    )
    for a, b in zip(first[:-1], last[:-1]):
        torch.testing.assert_close(a.weight, b.weight)
    torch.testing.assert_close(4.0 * first[-1].weight, last[-1].weight)
    torch.testing.assert_close(4.0 * first[-1].bias, last[-1].bias)
    with pytest.raises(ValueError, match="init_scale"):
        _layer(init_scale=0.0)
    with pytest.raises(ValueError, match="relaxation"):
        _layer(relaxation="lbfgs")
