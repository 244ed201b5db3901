"""RandomWalkerQP against SciPy's sparse LU of the energy's normal equations, finite
differences, and the properties of the solution (sum to 1, bounds, w = 0, scaling).

CG results are compared within the bound the layer's checked tolerance implies:
``||x_k - x*_k|| = ||A^{-1} r_k|| <= ||r_k|| / lambda_min(A) <= tol ||u_k|| / min_i s_i``, since
``A = L_w + diag(s)`` with ``L_w`` positive semidefinite has ``lambda_min(A) >= min_i s_i``.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch

from cutslots.qp import ConvergenceError, ConvergenceWarning, RandomWalkerQP, cholmod_available, random_walker

ENGINES = ["cg", "sparse"]
F64 = torch.float64


def energy_matrix(weights: np.ndarray, s: np.ndarray) -> sp.csc_matrix:
    """Hessian / 2 of the energy, edge by edge: ``sum_e w_e (e_i - e_j)(e_i - e_j)^T + diag(s)``."""
    H, W = s.shape
    rows, cols, vals = [], [], []
    for i in range(H):
        for j in range(W):
            for ch, (ni, nj) in enumerate(((i, j + 1), (i + 1, j))):
                if ni < H and nj < W:
                    p, q, w = i * W + j, ni * W + nj, weights[ch, i, j]
                    rows += [p, q, p, q]
                    cols += [p, q, q, p]
                    vals += [w, w, -w, -w]
    n = H * W
    return (sp.coo_matrix((vals, (rows, cols)), shape=(n, n)) + sp.diags(s.ravel())).tocsc()


def oracle(weights: torch.Tensor, unaries: torch.Tensor) -> tuple[torch.Tensor, list[sp.csc_matrix]]:
    """``x: (B, K, H, W)`` by SciPy's sparse LU, and each image's matrix."""
    w, u = weights.double().numpy(), unaries.double().numpy()
    B, K, H, W = u.shape
    mats = [energy_matrix(w[b], u[b].sum(0)) for b in range(B)]
    x = np.stack([spl.splu(A).solve(u[b].reshape(K, -1).T).T for b, A in enumerate(mats)])
    return torch.from_numpy(x.reshape(B, K, H, W)), mats


def cg_bound(unaries: torch.Tensor, tol: float) -> float:
    """Largest ``tol ||u_k|| / min s`` over the batch (module docstring)."""
    u = unaries.double()
    norms = torch.linalg.vector_norm(u.flatten(2), dim=-1)  # (B, K)
    return tol * (norms / u.sum(1).flatten(1).amin(1, keepdim=True)).max().item()


def make_unaries(B: int, K: int, H: int, W: int, gen: torch.Generator) -> torch.Tensor:
    return 0.1 + torch.rand(B, K, H, W, generator=gen, dtype=F64)


def piecewise_weights(
    B: int, H: int, W: int, contrast: float, gen: torch.Generator, strong: float | None = None
) -> torch.Tensor:
    """Weights ``strong`` (default ``contrast``) inside the pieces of a random 2 x 2 split of
    each image, ``strong / contrast`` across piece boundaries, times a factor in [1, 2)."""
    strong = contrast if strong is None else strong
    out = torch.empty(B, 2, H, W, dtype=F64)
    for b in range(B):
        r, c = (int(torch.randint(0, n, (1,), generator=gen)) for n in (H, W))
        label = (torch.arange(H)[:, None] >= r).long() * 2 + (torch.arange(W)[None, :] >= c).long()
        same = torch.ones(2, H, W, dtype=torch.bool)
        same[0, :, :-1] = label[:, :-1] == label[:, 1:]
        same[1, :-1, :] = label[:-1, :] == label[1:, :]
        out[b] = torch.where(same, strong, strong / contrast)
    return out * (1 + torch.rand(B, 2, H, W, generator=gen, dtype=F64))


def solve(weights: torch.Tensor, unaries: torch.Tensor, **kw) -> torch.Tensor:
    return RandomWalkerQP(weights.shape[-2], weights.shape[-1], **kw)(weights, unaries)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("contrast", [1.0, 1e2, 1e4])
@pytest.mark.parametrize("h,w", [(1, 1), (1, 9), (7, 1), (4, 6), (9, 5), (16, 16)])
def test_values_match_scipy_lu_float64(engine, contrast, h, w):
    gen = torch.Generator().manual_seed(h * 100 + w)
    weights, unaries = piecewise_weights(2, h, w, contrast, gen), make_unaries(2, 3, h, w, gen)
    layer = RandomWalkerQP(h, w, engine=engine, tol=1e-10)
    x = layer(weights, unaries)
    ref, mats = oracle(weights, unaries)
    assert x.dtype == F64
    assert (x - ref).abs().max().item() <= 1e-6
    if engine == "cg":
        # The reported residual is the true one, up to rounding (~1e-13 relative here):
        # recomputed with the oracle's matrix.
        for b, A in enumerate(mats):
            u, xb = unaries[b].reshape(3, -1).numpy(), x[b].reshape(3, -1).numpy()
            residual = np.linalg.norm(u - (A @ xb.T).T, axis=1) / np.linalg.norm(u, axis=1)
            assert residual.max() <= 1e-10 * (1 + 1e-2)
            assert abs(residual.max() - layer.stats.forward.residual[b].item()) <= 1e-2 * residual.max() + 1e-12


@pytest.mark.parametrize("h,w", [(1, 12), (10, 7), (24, 24)])
def test_float32_cg_within_the_tolerance_bound(h, w):
    # Strong edges 10 x the unaries, 1e4 contrast: float32 reaches tol 1e-4 (its rounding
    # floor, about 1e-7 ||A|| ||x|| / ||u||, is far below), so the module-docstring bound holds.
    gen = torch.Generator().manual_seed(3)
    weights, unaries = piecewise_weights(3, h, w, 1e4, gen, strong=10.0), make_unaries(3, 4, h, w, gen)
    layer = RandomWalkerQP(h, w)
    x = layer(weights.float(), unaries.float())
    ref, _ = oracle(weights, unaries)
    assert x.dtype == torch.float32
    assert layer.stats.forward.residual.max().item() <= 1e-4
    err = torch.linalg.vector_norm((x.double() - ref).flatten(2), dim=-1).max().item()
    assert err <= 2 * cg_bound(unaries, 1e-4)


def test_two_labels_solve_one_and_keep_both_within_tol(monkeypatch):
    """K = 2 solves one right-hand side per image (forward and adjoint) and derives the other
    from sum_k x_k = 1; both labels' true residuals (the oracle's matrices) stay below tol,
    whichever label has the larger norm, and the gradients match the sparse engine's."""
    gen = torch.Generator().manual_seed(5)
    h, w, tol = 9, 8, 1e-9
    weights, unaries = piecewise_weights(4, h, w, 1e2, gen), make_unaries(4, 2, h, w, gen)
    unaries[0, 0] *= 5  # label 1 has the smaller norm in item 0, label 0 in item 1
    unaries[1, 1] *= 5
    widths = []
    real_pcg = random_walker.pcg
    monkeypatch.setattr(random_walker, "pcg", lambda *a, **k: widths.append(a[2].shape[1]) or real_pcg(*a, **k))
    upstream = torch.randn(4, 2, h, w, generator=gen, dtype=F64)
    grads = []
    for engine in ENGINES:
        wt, ut = weights.clone().requires_grad_(True), unaries.clone().requires_grad_(True)
        x = RandomWalkerQP(h, w, engine=engine, tol=tol)(wt, ut)
        (x * upstream).sum().backward()
        grads.append((wt.grad, ut.grad))
        if engine == "cg":
            assert widths == [1, 1]  # one label per image, forward and adjoint
            _, mats = oracle(weights, unaries)
            for b, A in enumerate(mats):
                u, xb = unaries[b].reshape(2, -1).numpy(), x[b].detach().reshape(2, -1).numpy()
                residual = np.linalg.norm(u - (A @ xb.T).T, axis=1) / np.linalg.norm(u, axis=1)
                assert residual.max() <= tol * (1 + 1e-2)
    for a, b in zip(*grads):
        assert ((a - b).abs().max() / b.abs().max()).item() <= 1e-6


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("h,w", [(3, 4), (1, 5)])
def test_gradcheck(engine, h, w):
    gen = torch.Generator().manual_seed(0)
    # Values in [0.5, 1.5): finite-difference steps keep them >= 0, and the ignored last
    # column / row are inputs too (their numerical gradient is 0).
    weights = (0.5 + torch.rand(2, 2, h, w, generator=gen, dtype=F64)).requires_grad_(True)
    unaries = (0.5 + torch.rand(2, 2, h, w, generator=gen, dtype=F64)).requires_grad_(True)
    layer = RandomWalkerQP(h, w, engine=engine, tol=1e-13)
    assert torch.autograd.gradcheck(layer, (weights, unaries))


@pytest.mark.parametrize("engine", ENGINES)
def test_gradients_match_central_differences_at_high_contrast(engine):
    gen = torch.Generator().manual_seed(1)
    h, w = 8, 7
    weights, unaries = piecewise_weights(2, h, w, 1e4, gen, strong=1e2), make_unaries(2, 3, h, w, gen)
    upstream = torch.randn(2, 3, h, w, generator=gen, dtype=F64)
    layer = RandomWalkerQP(h, w, engine=engine, tol=1e-13)

    def loss(wt, ut):
        return (layer(wt, ut) * upstream).sum()

    wt, ut = weights.clone().requires_grad_(True), unaries.clone().requires_grad_(True)
    loss(wt, ut).backward()
    # Relative directions (v * input) keep the steps proportionate to each weight's scale.
    eps = 1e-5
    dw = weights * torch.randn(weights.shape, generator=gen, dtype=F64)
    du = unaries * torch.randn(unaries.shape, generator=gen, dtype=F64)
    for name, grad, v, moved in (
        ("w", wt.grad, dw, lambda t: loss(weights + t * dw, unaries)),
        ("u", ut.grad, du, lambda t: loss(weights, unaries + t * du)),
    ):
        numeric = ((moved(eps) - moved(-eps)) / (2 * eps)).item()
        analytic = (grad * v).sum().item()
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), name


def test_engines_agree_on_gradients():
    gen = torch.Generator().manual_seed(2)
    h, w = 12, 10
    weights, unaries = piecewise_weights(3, h, w, 1e4, gen), make_unaries(3, 4, h, w, gen)
    upstream = torch.randn(3, 4, h, w, generator=gen, dtype=F64)
    grads = []
    for engine in ENGINES:
        wt, ut = weights.clone().requires_grad_(True), unaries.clone().requires_grad_(True)
        layer = RandomWalkerQP(h, w, engine=engine, tol=1e-10)
        (layer(wt, ut) * upstream).sum().backward()
        grads.append((wt.grad, ut.grad))
        if engine == "cg":
            assert layer.stats.backward is not None and layer.stats.backward.residual.max() <= 1e-10
        else:
            assert layer.stats.forward is None and layer.stats.backward is None
    for a, b in zip(*grads):
        assert ((a - b).abs().max() / b.abs().max()).item() <= 1e-6


@pytest.mark.parametrize("engine", ENGINES)
def test_sums_to_one_and_stays_in_unit_interval(engine):
    gen = torch.Generator().manual_seed(4)
    h, w = 16, 12
    weights, unaries = piecewise_weights(2, h, w, 1e4, gen), make_unaries(2, 5, h, w, gen)
    x = solve(weights, unaries, engine=engine)
    # The K errors add up: |sum_k x_k - 1| <= sum_k ||x_k - x*_k|| <= K * bound.
    slack = 5 * cg_bound(unaries, 1e-8) if engine == "cg" else 1e-12
    assert (x.sum(1) - 1).abs().max().item() <= slack
    assert x.min().item() >= -slack and x.max().item() <= 1 + slack


@pytest.mark.parametrize("engine", ENGINES)
def test_no_edges_gives_normalised_unaries(engine):
    gen = torch.Generator().manual_seed(5)
    unaries = make_unaries(2, 3, 6, 9, gen)
    x = solve(torch.zeros(2, 2, 6, 9, dtype=F64), unaries, engine=engine)
    expected = unaries / unaries.sum(1, keepdim=True)
    assert (x - expected).abs().max().item() <= max(cg_bound(unaries, 1e-8), 1e-14)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_joint_scaling_invariance(engine, scale):
    gen = torch.Generator().manual_seed(6)
    h, w = 10, 11
    weights, unaries = piecewise_weights(2, h, w, 1e2, gen), make_unaries(2, 3, h, w, gen)
    x = solve(weights, unaries, engine=engine)
    scaled = solve(weights * scale, unaries * scale, engine=engine)
    # The relative residual is scale-free, so each solve is within the bound of the unscaled one.
    assert (x - scaled).abs().max().item() <= 2 * cg_bound(unaries, 1e-8) + 1e-12


@pytest.mark.parametrize("engine", ENGINES)
def test_ignored_last_column_and_row_have_no_effect_and_no_gradient(engine):
    gen = torch.Generator().manual_seed(7)
    h, w = 5, 6
    weights, unaries = piecewise_weights(2, h, w, 1e2, gen), make_unaries(2, 3, h, w, gen)
    other = weights.clone()
    other[:, 0, :, -1] = 1e3 * torch.rand(2, h, generator=gen, dtype=F64)
    other[:, 1, -1, :] = 0.0
    assert torch.equal(solve(weights, unaries, engine=engine), solve(other, unaries, engine=engine))
    wt = weights.clone().requires_grad_(True)
    (solve(wt, unaries, engine=engine) * torch.randn(2, 3, h, w, generator=gen, dtype=F64)).sum().backward()
    assert wt.grad[:, 0, :, -1].abs().max().item() == 0.0
    assert wt.grad[:, 1, -1, :].abs().max().item() == 0.0
    assert wt.grad[:, 0, :, :-1].abs().min().item() > 0.0


def test_batch_chunks_give_the_batched_result(monkeypatch):
    gen = torch.Generator().manual_seed(8)
    h, w = 6, 7
    weights, unaries = piecewise_weights(5, h, w, 1e2, gen), make_unaries(5, 2, h, w, gen)
    whole = solve(weights, unaries)
    monkeypatch.setattr(random_walker, "_CHUNK_ELEMENTS", 2 * 2 * h * w)  # chunks of 2, 2, 1
    assert random_walker._chunks(5, 2 * h * w, torch.device("cpu")) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    layer = RandomWalkerQP(h, w)
    chunked = layer(weights, unaries)
    assert (whole - chunked).abs().max().item() <= 2 * cg_bound(unaries, 1e-8)
    assert layer.stats.forward.iterations.shape == (5,)
    assert layer.stats.forward.iterations.dtype == torch.int64


def _easy_and_hard_batch(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Items 0 and 2: no edges and s = 1, so P = A and CG is exact after one step. Item 1:
    random weights, which one step does not solve."""
    h, w = 8, 8
    unaries = make_unaries(3, 3, h, w, gen)
    unaries = unaries / unaries.sum(1, keepdim=True)
    weights = torch.zeros(3, 2, h, w, dtype=F64)
    weights[1] = 1 + torch.rand(2, h, w, generator=gen, dtype=F64)
    return weights, unaries


@pytest.mark.parametrize("chunk", [1, 3])
def test_nonconvergence_raises_naming_the_batch_items(monkeypatch, chunk):
    monkeypatch.setattr(random_walker, "_CHUNK_ELEMENTS", chunk * 3 * 64)  # item indices across chunks
    weights, unaries = _easy_and_hard_batch(torch.Generator().manual_seed(9))
    message = r"CG \(forward\) missed tol=1e-08 for batch items \[1\] \(of 3\)"
    with pytest.raises(ConvergenceError, match=message) as err:
        solve(weights, unaries, max_iter=1)
    assert err.value.items == [1]
    assert "stopped at max_iter=1" in str(err.value)


def test_nonconvergence_warns_and_returns_the_iterate():
    weights, unaries = _easy_and_hard_batch(torch.Generator().manual_seed(10))
    layer = RandomWalkerQP(8, 8, max_iter=1, on_nonconvergence="warn")
    with pytest.warns(ConvergenceWarning, match=r"batch items \[1\]"):
        x = layer(weights, unaries)
    assert torch.isfinite(x).all()
    assert layer.stats.forward.iterations.tolist() == [1, 1, 1]
    assert layer.stats.forward.residual[[0, 2]].max().item() <= 1e-8 < layer.stats.forward.residual[1].item()


def test_adjoint_nonconvergence_raises_naming_the_batch_items():
    gen = torch.Generator().manual_seed(11)
    weights, _ = _easy_and_hard_batch(gen)
    # Unaries constant per channel: x_k = u_k / s is exact after one step for every item,
    # whatever the weights; the adjoint of a random gradient is not, on item 1.
    unaries = torch.rand(3, 3, 1, 1, generator=gen, dtype=F64).add(0.1).expand(3, 3, 8, 8).contiguous()
    wt = weights.clone().requires_grad_(True)
    layer = RandomWalkerQP(8, 8, max_iter=1)
    x = layer(wt, unaries)
    with pytest.raises(ConvergenceError, match=r"CG \(adjoint\) missed tol=1e-08 for batch items \[1\]"):
        (x * torch.randn(x.shape, generator=gen, dtype=F64)).sum().backward()


def test_float32_rounding_floor_stalls_early_with_a_clear_error():
    # w / s ~ 1e6: float32 cannot represent an x whose residual is below ~1e-7 * 8e6 / 2.
    gen = torch.Generator().manual_seed(12)
    weights = torch.full((2, 2, 16, 16), 1e6)
    unaries = make_unaries(2, 2, 16, 16, gen).float()
    layer = RandomWalkerQP(16, 16, on_nonconvergence="warn")
    with pytest.warns(ConvergenceWarning, match=r"\[0, 1\] stalled .* use float64 inputs"):
        layer(weights, unaries)
    assert layer.stats.forward.stalled.all()
    assert layer.stats.forward.iterations.max().item() < layer.max_iter
    x64 = solve(weights.double(), unaries.double())  # the same problem converges in float64
    assert torch.isfinite(x64).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_slot_without_unaries_gets_zero(engine):
    # u_k = 0 is a zero right-hand side: x_k = 0 with no CG step (its relative residual is 0).
    gen = torch.Generator().manual_seed(15)
    weights, unaries = piecewise_weights(2, 6, 5, 1e2, gen), make_unaries(2, 3, 6, 5, gen)
    unaries[:, 1] = 0
    layer = RandomWalkerQP(6, 5, engine=engine)
    x = layer(weights, unaries)
    assert x[:, 1].abs().max().item() == 0.0
    assert (x - oracle(weights, unaries)[0]).abs().max().item() <= cg_bound(unaries, 1e-8) + 1e-12


def test_empty_batch():
    out = RandomWalkerQP(3, 4)(torch.zeros(0, 2, 3, 4), torch.zeros(0, 5, 3, 4))
    assert out.shape == (0, 5, 3, 4)


GOOD_W, GOOD_U = torch.ones(2, 2, 4, 5), torch.ones(2, 3, 4, 5)


def _with(t: torch.Tensor, index: tuple, value: float) -> torch.Tensor:
    t = t.clone()
    t[index] = value
    return t


@pytest.mark.parametrize(
    "weights,unaries,error,match",
    [
        (_with(GOOD_W, (0, 1, 2, 3), -1e-3), GOOD_U, ValueError, r"edge_weights must be >= 0, got a minimum of -0.001"),
        (GOOD_W, _with(GOOD_U, (1, 2, 0, 0), -2.0), ValueError, r"unaries must be >= 0"),
        (_with(GOOD_W, (1, 0, 0, 0), float("nan")), GOOD_U, ValueError, r"edge_weights contains NaN or inf"),
        (GOOD_W, _with(GOOD_U, (0, 0, 3, 4), float("inf")), ValueError, r"unaries contains NaN or inf"),
        (torch.ones(2, 3, 4, 5), GOOD_U, ValueError, r"edge_weights must have shape \(B, 2, 4, 5\), got \(2, 3, 4, 5"),
        (torch.ones(2, 2, 5, 4), GOOD_U, ValueError, r"edge_weights must have shape \(B, 2, 4, 5\), got \(2, 2, 5, 4"),
        (torch.ones(2, 4, 5), GOOD_U, ValueError, r"edge_weights must have shape \(B, 2, 4, 5\), got \(2, 4, 5\)"),
        (GOOD_W, torch.ones(2, 3, 4, 6), ValueError, r"unaries must have shape \(B, K, 4, 5\), got \(2, 3, 4, 6\)"),
        (GOOD_W, torch.ones(2, 0, 4, 5), ValueError, r"unaries must have K >= 1 channels"),
        (GOOD_W, torch.ones(3, 3, 4, 5), ValueError, r"same batch size, got 2 and 3"),
        (GOOD_W.half(), GOOD_U.half(), TypeError, r"edge_weights must be float32 or float64, got torch.float16"),
        (GOOD_W, GOOD_U.long(), TypeError, r"same dtype, got torch.float32 and torch.int64"),
        (GOOD_W, GOOD_U.double(), TypeError, r"same dtype, got torch.float32 and torch.float64"),
        (GOOD_W.to("meta"), GOOD_U, ValueError, r"same device, got meta and cpu"),
        (GOOD_W.numpy(), GOOD_U, TypeError, r"edge_weights must be a torch.Tensor, got ndarray"),
        (GOOD_W, _with(GOOD_U, (1, slice(None), 2, 2), 0.0), ValueError, r"sum_k u_k > 0 .* batch items \[1\]"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(weights, unaries, error, match):
    with pytest.raises(error, match=match):
        RandomWalkerQP(4, 5)(weights, unaries)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"engine": "lu"}, r"engine must be one of"),
        ({"tol": 0.0}, r"tol must be a number in \(0, 1\)"),
        ({"tol": 1.5}, r"tol must be"),
        ({"max_iter": 0}, r"max_iter must be an integer >= 1"),
        ({"on_nonconvergence": "ignore"}, r"on_nonconvergence must be one of"),
        ({"engine": "sparse", "backend": "umfpack"}, r"backend must be one of"),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomWalkerQP(4, 5, **kwargs)
    with pytest.raises(ValueError, match=r"height must be an integer >= 1"):
        RandomWalkerQP(0, 5)


@pytest.mark.skipif(not cholmod_available(), reason="needs scikit-sparse (CHOLMOD)")
def test_cholmod_backend_matches_scipy_lu():
    gen = torch.Generator().manual_seed(13)
    weights, unaries = piecewise_weights(2, 9, 8, 1e4, gen), make_unaries(2, 3, 9, 8, gen)
    x = solve(weights, unaries, engine="sparse", backend="cholmod")
    assert (x - oracle(weights, unaries)[0]).abs().max().item() <= 1e-9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("engine", ENGINES)
def test_cuda_matches_cpu(engine, dtype):
    gen = torch.Generator().manual_seed(14)
    h, w = 20, 17
    weights, unaries = piecewise_weights(3, h, w, 1e2, gen, strong=10.0), make_unaries(3, 4, h, w, gen)
    upstream = torch.randn(3, 4, h, w, generator=gen, dtype=F64)
    results = []
    for device in ("cpu", "cuda"):
        wt = weights.to(device, dtype, copy=True).requires_grad_(True)
        ut = unaries.to(device, dtype, copy=True).requires_grad_(True)
        x = solve(wt, ut, engine=engine)
        assert x.device.type == device and x.dtype == dtype
        (x * upstream.to(device, dtype)).sum().backward()
        results.append([t.detach().double().cpu() for t in (x, wt.grad, ut.grad)])
    tol = 1e-4 if dtype == torch.float32 else 1e-8
    bound = 2 * cg_bound(unaries, tol) + 1e-12
    assert (results[0][0] - results[1][0]).abs().max().item() <= bound
    for a, b in zip(results[0][1:], results[1][1:]):
        assert ((a - b).abs().max() / b.abs().max()).item() <= 100 * tol
