import numpy as np
import pytest
import torch

from cutslots.qp import GridCutQP, build_grid_cut_graph, cut_closed_form
from cutslots.qp.grid_graph import edge_exists
from oracles import dense_kkt

SIZES = [(1, 1), (1, 7), (6, 1), (3, 4), (8, 8), (5, 11)]


def solve(weights, gamma=0.7, **kw):
    s = GridCutQP(weights.shape[-2], weights.shape[-1], gamma=gamma, cache_dir=False, **kw)(weights)
    return [s.p, s.p_s, s.p_t, s.d]


def test_paper_size_of_the_64x64_problem():
    g = build_grid_cut_graph(64, 64)
    assert (g.num_variables, g.num_constraints) == (52_739, 24_321)


@pytest.mark.parametrize("h,w", [(1, 1), (4, 5), (64, 64)])
def test_released_form_counts(h, w):
    g = build_grid_cut_graph(h, w, form="released")
    n, interior = h * w, max(h - 2, 0) * max(w - 2, 0)
    edges = 4 * interior + 2 * n
    assert g.num_constraints == edges + 1
    assert g.num_variables == n + 2 + 2 * edges  # no s_st slack
    assert g.b0 == 10.0


@pytest.mark.parametrize("form", ["paper", "released"])
def test_sparse_engine_matches_dense_kkt(form):
    h, w, gamma = 3, 4, 0.9
    g = build_grid_cut_graph(h, w, form=form)
    weights = np.random.default_rng(0).normal(size=(2, 6, h, w))
    z = dense_kkt(g.A.toarray(), g.b, g.cost_vector(weights), gamma)
    p, p_s, p_t, d = solve(torch.from_numpy(weights), gamma, form=form, engine="sparse", backend="scipy")
    np.testing.assert_allclose(p.numpy(), z[:, : h * w].reshape(2, h, w), atol=1e-10)
    np.testing.assert_allclose(p_s.numpy(), z[:, h * w], atol=1e-10)
    np.testing.assert_allclose(p_t.numpy(), z[:, h * w + 1], atol=1e-10)
    np.testing.assert_allclose(d.numpy(), g.edge_variables(z), atol=1e-10)
    # The terminal constraint holds: p_s - p_t = b0 (+ slack in the paper form).
    if form == "released":
        np.testing.assert_allclose((p_s - p_t).numpy(), 10.0, atol=1e-10)


@pytest.mark.parametrize("h,w", SIZES)
def test_closed_form_equals_generic_solver_float64(h, w):
    weights = torch.randn(3, 6, h, w, dtype=torch.float64)
    exact = solve(weights, engine="closed_form")
    generic = solve(weights, engine="sparse", backend="scipy")
    for a, b in zip(exact, generic):
        assert (a - b).abs().max().item() <= 1e-9


@pytest.mark.parametrize("h,w", [(1, 9), (7, 5), (16, 16)])
def test_closed_form_float32_relative_error(h, w):
    weights = torch.randn(2, 6, h, w, dtype=torch.float64)
    exact32 = solve(weights.float(), engine="closed_form")
    generic = solve(weights, engine="sparse", backend="scipy")
    for a, b in zip(exact32, generic):
        assert a.dtype == torch.float32
        assert ((a.double() - b).abs().max() / b.abs().max()).item() <= 1e-5


@pytest.mark.parametrize("h,w", [(1, 5), (4, 6), (9, 7)])
def test_closed_form_gradients_equal_generic(h, w):
    weights = torch.randn(2, 6, h, w, dtype=torch.float64)
    upstream = [torch.randn_like(x) for x in solve(weights)]
    grads = []
    for engine in ("closed_form", "sparse"):
        wt = weights.clone().requires_grad_(True)
        outs = solve(wt, engine=engine, backend="scipy")
        sum((o * u).sum() for o, u in zip(outs, upstream)).backward()
        grads.append(wt.grad)
    assert (grads[0] - grads[1]).abs().max().item() <= 1e-9
    # Weights of edges that leave the grid get no gradient.
    absent = ~torch.from_numpy(edge_exists(h, w))
    assert grads[0][:, absent].abs().max().item() == 0.0


OUTPUTS = ("p", "p_s", "p_t", "d")


@pytest.mark.parametrize("read", [("p",), ("d",), ("p_s",), ("p_t", "d"), OUTPUTS])
def test_closed_form_gradient_of_any_outputs_equals_generic(read):
    """The closed form's backward handles every subset of read outputs (unread ones send no
    gradient; d's gradient is applied inside the vertex solve's backward)."""
    weights = torch.randn(3, 6, 5, 7, dtype=torch.float64)
    upstream = {k: torch.randn_like(v) for k, v in zip(OUTPUTS, solve(weights))}
    grads = []
    for engine in ("closed_form", "sparse"):
        wt = weights.clone().requires_grad_(True)
        outs = dict(zip(OUTPUTS, solve(wt, engine=engine, backend="scipy")))
        sum((outs[k] * upstream[k]).sum() for k in read).backward()
        grads.append(wt.grad)
    assert (grads[0] - grads[1]).abs().max().item() <= 1e-9


def test_closed_form_gradient_of_a_plain_sum():
    # p.sum() sends an expanded (stride-0) gradient.
    weights = torch.randn(2, 6, 4, 6, dtype=torch.float64)
    grads = []
    for engine in ("closed_form", "sparse"):
        wt = weights.clone().requires_grad_(True)
        p, _, _, d = solve(wt, engine=engine, backend="scipy")
        (p.sum() + d.sum()).backward()
        grads.append(wt.grad)
    assert (grads[0] - grads[1]).abs().max().item() <= 1e-9


@pytest.mark.parametrize("n", [1, 2, 5, 8, 9, 16])
@pytest.mark.parametrize("fold", [False, True])
def test_axis_dct_matches_the_dct_matrix(monkeypatch, n, fold):
    monkeypatch.setattr(cut_closed_form, "_FOLD_MIN", 2 if fold else 10**6)
    dct = cut_closed_form._AxisDCT(n, torch.float64, torch.device("cpu"))
    assert dct.folded == (fold and n % 2 == 0)
    D = cut_closed_form.dct_matrix(n)
    x = torch.randn(3, 4, n, dtype=torch.float64)
    scratch = cut_closed_form._Scratch(x)
    coef = dct.analysis(x, -1, scratch)  # (P, 3, 4, m), frequencies split by parity
    dense = x @ D.T
    for k, freqs in enumerate(dct.frequencies):
        torch.testing.assert_close(coef[k], dense[..., freqs], rtol=0, atol=1e-12)
    torch.testing.assert_close(dct.synthesis(coef, -1, torch.empty_like(x), scratch), x, rtol=0, atol=1e-12)
    xt = x.transpose(-1, -2).contiguous()  # the same along the rows
    coef = dct.analysis(xt, -2, scratch)
    for k, freqs in enumerate(dct.frequencies):
        torch.testing.assert_close(coef[k], dense.transpose(-1, -2)[..., freqs, :], rtol=0, atol=1e-12)
    torch.testing.assert_close(dct.synthesis(coef, -2, torch.empty_like(xt), scratch), xt, rtol=0, atol=1e-12)


@pytest.mark.parametrize("h,w", [(4, 6), (6, 5), (1, 8), (10, 10)])
def test_folded_closed_form_equals_generic_solver(monkeypatch, h, w):
    monkeypatch.setattr(cut_closed_form, "_FOLD_MIN", 2)
    cut_closed_form._spectral.cache_clear()
    weights = torch.randn(3, 6, h, w, dtype=torch.float64)
    upstream = [torch.randn_like(x) for x in solve(weights, engine="sparse", backend="scipy")]
    results = []
    for engine in ("closed_form", "sparse"):
        wt = weights.clone().requires_grad_(True)
        outs = solve(wt, engine=engine, backend="scipy")
        sum((o * u).sum() for o, u in zip(outs, upstream)).backward()
        results.append([o.detach() for o in outs] + [wt.grad])
    cut_closed_form._spectral.cache_clear()
    for a, b in zip(*results):
        assert (a - b).abs().max().item() <= 1e-9


def test_closed_form_batch_chunks(monkeypatch):
    """Chunked processing (with a short last chunk) equals one chunk."""
    weights = torch.randn(5, 6, 4, 3, dtype=torch.float64, requires_grad=True)
    upstream = [torch.randn_like(x) for x in solve(weights.detach())]
    results = []
    for elements in (10**6, 2 * 4 * 3):  # one chunk; chunks of 2, 2, 1
        monkeypatch.setattr(cut_closed_form, "_CHUNK_ELEMENTS", elements)
        outs = solve(weights)
        (grad,) = torch.autograd.grad(sum((o * u).sum() for o, u in zip(outs, upstream)), weights)
        results.append([o.detach() for o in outs] + [grad])
    assert len(cut_closed_form._chunks(5, 4, 3)) == 3
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_closed_form_empty_batch():
    weights = torch.zeros(0, 6, 3, 4, requires_grad=True)
    p, p_s, _, d = solve(weights)
    assert p.shape == (0, 3, 4) and p_s.shape == (0,) and d.shape == (0, 6, 3, 4)
    (p.sum() + d.sum()).backward()
    assert weights.grad.shape == (0, 6, 3, 4)


def test_closed_form_gradcheck():
    weights = torch.randn(2, 6, 3, 4, dtype=torch.float64, requires_grad=True)
    qp = GridCutQP(3, 4, gamma=0.6)

    def f(w):
        s = qp(w)
        return s.p, s.p_s, s.p_t, s.d

    assert torch.autograd.gradcheck(f, (weights,))


def test_p_is_affine_in_weights():
    w1, w2 = torch.randn(2, 1, 6, 5, 6, dtype=torch.float64)
    p = lambda w: solve(w)[0]  # noqa: E731
    zero = torch.zeros_like(w1)
    lhs = p(2.0 * w1 - 3.0 * w2) - p(zero)
    rhs = 2.0 * (p(w1) - p(zero)) - 3.0 * (p(w2) - p(zero))
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("engine", ["closed_form", "sparse"])
def test_gamma_acts_as_a_temperature(engine):
    # p = F(w)/gamma + const with const independent of gamma: scaling gamma == scaling w.
    w = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    a = solve(w, gamma=3.0, engine=engine, backend="scipy")
    b = solve(w / 3.0, gamma=1.0, engine=engine, backend="scipy")
    for x, y in zip(a[:3], b[:3]):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)


def test_equal_opposite_neighbour_weights_leave_p_unchanged():
    h, w = 5, 6
    base = torch.randn(1, 6, h, w, dtype=torch.float64)
    sym = torch.zeros_like(base)
    horiz = torch.randn(h, w - 1, dtype=torch.float64).abs()
    vert = torch.randn(h - 1, w, dtype=torch.float64).abs()
    sym[0, 0, :, :-1] = horiz  # (i,j) -> (i,j+1)
    sym[0, 1, :, 1:] = horiz  # (i,j+1) -> (i,j), same pair, same weight
    sym[0, 2, :-1, :] = vert
    sym[0, 3, 1:, :] = vert
    for a, b in zip(solve(base)[:3], solve(base + 5.0 * sym)[:3]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_weights_of_edges_leaving_the_grid_are_ignored():
    w = torch.randn(1, 6, 4, 4, dtype=torch.float64)
    w2 = w.clone()
    w2[0, 0, :, -1] = 100.0  # "right" in the last column
    w2[0, 3, 0, :] = -50.0  # "up" in the first row
    for a, b in zip(solve(w), solve(w2)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_source_heavy_pixel_goes_to_source_side():
    # As in a min cut, a costly s->v edge (and a cheap v->t edge) keeps v on the source
    # side: the left half must sit nearer p_s than the right half.
    w = torch.zeros(1, 6, 4, 8, dtype=torch.float64)
    w[0, 4, :, :4], w[0, 5, :, :4] = 1.0, -1.0
    w[0, 4, :, 4:], w[0, 5, :, 4:] = -1.0, 1.0
    p = solve(w)[0]
    assert (p[0, :, :4] > p[0, :, 4:].max()).all()


def test_bad_input_errors():
    qp = GridCutQP(4, 5)
    with pytest.raises(ValueError, match=r"weights must have shape \(\.\.\., 6, 4, 5\)"):
        qp(torch.zeros(2, 6, 5, 4))
    with pytest.raises(ValueError, match=r"weights must have shape \(B, 6, 4, 5\)"):
        qp(torch.zeros(6, 4, 5))
    with pytest.raises(TypeError, match="weights must be float32 or float64"):
        qp(torch.zeros(1, 6, 4, 5, dtype=torch.float16))
    for bad in (float("nan"), float("inf"), -float("inf")):
        w = torch.zeros(1, 6, 4, 5)
        w[0, 2, 1, 1] = bad
        with pytest.raises(ValueError, match="weights contains NaN or inf"):
            qp(w)
    for gamma in (0.0, -0.5):
        with pytest.raises(ValueError, match="gamma must be"):
            GridCutQP(4, 5, gamma=gamma)
    with pytest.raises(ValueError, match="height must be an integer >= 1"):
        GridCutQP(0, 5)
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        GridCutQP(3, -2)
    with pytest.raises(ValueError, match="engine='closed_form' solves form='paper' only"):
        GridCutQP(3, 3, form="released", engine="closed_form")
    with pytest.raises(ValueError, match="form must be one of"):
        GridCutQP(3, 3, form="exact")
    with pytest.raises(ValueError, match="engine must be one of"):
        GridCutQP(3, 3, engine="fast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_closed_form_on_cuda_matches_cpu():
    w = torch.randn(2, 6, 16, 16, dtype=torch.float64)
    cpu = solve(w)
    gpu = solve(w.cuda())
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu())
