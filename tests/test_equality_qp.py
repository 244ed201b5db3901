import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cutslots.qp import DependentRowsError, EqualityQP, cholmod_available, factorize_gram, gamma_from_paper
from cutslots.qp.factor import TriangularFactor
from oracles import dense_kkt

BACKENDS = ["scipy"] + (["cholmod"] if cholmod_available() else [])


def random_constraints(m: int, n: int, seed: int, density: float = 0.3) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    A = sp.random(m, n, density=density, random_state=rng, format="lil")
    A[np.arange(m), rng.permutation(n)[:m]] = 1.0 + rng.random(m)  # full row rank w.p. 1
    return sp.csr_matrix(A)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m,n,gamma", [(1, 3, 1.0), (5, 12, 0.3), (20, 50, 2.0), (30, 31, 0.7)])
def test_matches_dense_kkt(backend, m, n, gamma):
    A = random_constraints(m, n, seed=m * n)
    rng = np.random.default_rng(1)
    b, c = rng.normal(size=m), rng.normal(size=(4, n))
    qp = EqualityQP(A, b, gamma, backend=backend, cache_dir=False)
    z = qp(torch.from_numpy(c)).numpy()
    np.testing.assert_allclose(z, dense_kkt(A.toarray(), b, c, gamma), atol=1e-10)
    np.testing.assert_allclose(A @ z.T, np.repeat(b[:, None], 4, 1), atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_living_only_in_dense_columns(backend):
    # Like the released cut form's p_s - p_t = b0: once the dense columns are split off, that
    # row of the sparse part is empty; the placeholder diagonal must be undone exactly.
    A = random_constraints(30, 70, seed=6, density=0.05).tolil()
    A[:, 3], A[:, 4] = 1.0, -1.0
    A[29, :] = 0.0
    A[29, 3], A[29, 4] = 1.0, -1.0
    A = sp.csr_matrix(A)
    rng = np.random.default_rng(3)
    b, c = rng.normal(size=30), rng.normal(size=(2, 70))
    qp = EqualityQP(A, b, 0.9, backend=backend, cache_dir=False, dense_column_threshold=15)
    assert qp.factorization.dense_columns.tolist() == [3, 4]
    np.testing.assert_allclose(qp(torch.from_numpy(c)).numpy(), dense_kkt(A.toarray(), b, c, 0.9), atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_columns_go_through_woodbury(backend):
    A = random_constraints(40, 90, seed=3, density=0.05).tolil()
    A[:, 7] = 1.0  # two columns touching every row, like the cut's terminals
    A[:, 8] = -1.0
    A = sp.csr_matrix(A)
    rng = np.random.default_rng(2)
    b, c = rng.normal(size=40), rng.normal(size=(3, 90))
    qp = EqualityQP(A, b, 0.5, backend=backend, cache_dir=False, dense_column_threshold=20)
    assert qp.factorization.dense_columns.tolist() == [7, 8]
    np.testing.assert_allclose(qp(torch.from_numpy(c)).numpy(), dense_kkt(A.toarray(), b, c, 0.5), atol=1e-10)


def test_gradient_matches_formula_and_gradcheck():
    A = random_constraints(6, 15, seed=5)
    gamma = 0.8
    qp = EqualityQP(A, np.ones(6), gamma, backend="scipy", cache_dir=False)
    c = torch.randn(3, 15, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(qp, (c,))
    g = torch.randn(3, 15, dtype=torch.float64)
    (qp(c) * g).sum().backward()
    Ad = A.toarray()
    C = (np.eye(15) - Ad.T @ np.linalg.solve(Ad @ Ad.T, Ad)) / gamma
    np.testing.assert_allclose(c.grad.numpy(), -(C @ g.numpy().T).T, atol=1e-12)


def test_float32_close_to_float64_and_dtype_kept():
    A = random_constraints(10, 25, seed=8)
    qp = EqualityQP(A, np.arange(10.0), 1.5, backend="scipy", cache_dir=False)
    c = torch.randn(2, 25, dtype=torch.float64)
    z32, z64 = qp(c.float()), qp(c)
    assert z32.dtype == torch.float32
    torch.testing.assert_close(z32.double(), z64, rtol=1e-5, atol=1e-5)
    assert qp(c[0]).shape == (25,)


def test_gamma_convention_is_half_the_paper_coefficient():
    # The paper minimises gamma_p * sum z^2 + c.z; that is 1/2 (2 gamma_p) |z|^2 + c.z.
    A = random_constraints(4, 9, seed=11)
    b, c, gamma_p = np.ones(4), np.random.default_rng(0).normal(size=(1, 9)), 0.25
    Ad = A.toarray()
    kkt = np.block([[2 * gamma_p * np.eye(9), Ad.T], [Ad, np.zeros((4, 4))]])  # grad: 2 gamma_p z + c
    z_paper = np.linalg.solve(kkt, np.concatenate([-c[0], b]))[:9]
    qp = EqualityQP(A, b, gamma_from_paper(gamma_p), backend="scipy", cache_dir=False)
    np.testing.assert_allclose(qp(torch.from_numpy(c))[0].numpy(), z_paper, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("threshold", [None, 3])
def test_dependent_rows_raise(backend, threshold):
    A = random_constraints(5, 12, seed=2).tolil()
    A[4] = A[0] * 2.0 - A[1]
    with pytest.raises(DependentRowsError, match="dependent rows"):
        EqualityQP(
            sp.csr_matrix(A), np.zeros(5), 1.0, backend=backend, cache_dir=False, dense_column_threshold=threshold
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_factorizations_are_cached_on_disk(tmp_path, backend):
    A = random_constraints(30, 70, seed=4, density=0.1)
    first = factorize_gram(A, backend, cache_dir=tmp_path, cache_threshold_s=0.0)
    assert not first.from_cache and len(list(tmp_path.glob("*.npz"))) == 1
    second = factorize_gram(A, backend, cache_dir=tmp_path, cache_threshold_s=0.0)
    assert second.from_cache and isinstance(second.factor, TriangularFactor)
    rhs = np.random.default_rng(0).normal(size=(30, 4))
    M = (A @ A.T).toarray()
    np.testing.assert_allclose(M @ second.factor.solve(rhs), rhs, atol=1e-10)
    # A different matrix must not hit the same cache entry.
    other = factorize_gram(A * 2.0, backend, cache_dir=tmp_path, cache_threshold_s=0.0)
    assert not other.from_cache


def test_fast_factorizations_are_not_cached(tmp_path):
    factorize_gram(random_constraints(5, 9, seed=1), "scipy", cache_dir=tmp_path, cache_threshold_s=60.0)
    assert not list(tmp_path.iterdir())


def test_bad_input_errors():
    A = random_constraints(3, 6, seed=0)
    with pytest.raises(TypeError, match="A must be a scipy.sparse"):
        EqualityQP(A.toarray(), np.ones(3), 1.0)
    with pytest.raises(ValueError, match="b must have shape"):
        EqualityQP(A, np.ones(4), 1.0)
    for gamma in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="gamma"):
            EqualityQP(A, np.ones(3), gamma)
    with pytest.raises(ValueError, match="backend"):
        EqualityQP(A, np.ones(3), 1.0, backend="magic")
    qp = EqualityQP(A, np.ones(3), 1.0, backend="scipy", cache_dir=False)
    with pytest.raises(ValueError, match=r"c must have shape \(\.\.\., 6\)"):
        qp(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="c must be float32 or float64"):
        qp(torch.zeros(2, 6, dtype=torch.int64))
    with pytest.raises(TypeError, match="c must be a torch.Tensor"):
        qp(np.zeros((2, 6)))
    for bad in (float("nan"), float("inf")):
        c = torch.zeros(2, 6)
        c[1, 3] = bad
        with pytest.raises(ValueError, match="c contains NaN or inf"):
            qp(c)


def test_huge_finite_costs_are_accepted():
    # The hot-path finite check sums c; an overflowing sum must not be taken for inf.
    qp = EqualityQP(random_constraints(3, 6, seed=0), np.ones(3), 1.0, backend="scipy", cache_dir=False)
    assert torch.isfinite(qp(torch.full((1, 6), 3e38))).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inputs_match_cpu():
    A = random_constraints(10, 30, seed=9)
    qp = EqualityQP(A, np.ones(10), 1.0, backend="scipy", cache_dir=False)
    c = torch.randn(4, 30, dtype=torch.float64)
    torch.testing.assert_close(qp(c.cuda()).cpu(), qp(c))


def _numpy_cupy(monkeypatch):
    """Stand-in CuPy built on NumPy/SciPy (CuPy mirrors their API), to run the GPU path's
    logic (factor transfer, permutations, Woodbury term, DLPack hand-off) on the CPU."""
    import contextlib
    import sys
    import types

    import scipy.sparse.linalg as spl

    cupy = types.ModuleType("cupy")
    cupy.asarray, cupy.from_dlpack = np.asarray, np.from_dlpack
    cupy.cuda = types.SimpleNamespace(Device=lambda index: contextlib.nullcontext())
    cupyx = types.ModuleType("cupyx")
    cupyx_scipy = types.ModuleType("cupyx.scipy")
    cupyx_sparse = types.ModuleType("cupyx.scipy.sparse")
    cupyx_sparse.csr_matrix = sp.csr_matrix
    cupyx_linalg = types.ModuleType("cupyx.scipy.sparse.linalg")
    cupyx_linalg.spsolve_triangular = spl.spsolve_triangular
    for name, mod in [
        ("cupy", cupy),
        ("cupyx", cupyx),
        ("cupyx.scipy", cupyx_scipy),
        ("cupyx.scipy.sparse", cupyx_sparse),
        ("cupyx.scipy.sparse.linalg", cupyx_linalg),
    ]:
        monkeypatch.setitem(sys.modules, name, mod)


@pytest.mark.parametrize("threshold", [None, 15])
def test_gpu_solver_logic_with_a_numpy_stand_in_for_cupy(monkeypatch, threshold):
    from cutslots.qp.equality_qp import _CupySolver

    _numpy_cupy(monkeypatch)
    A = random_constraints(30, 70, seed=6, density=0.05).tolil()
    A[:, 3], A[:, 4] = 1.0, -1.0  # dense columns: exercises the Woodbury correction
    A = sp.csr_matrix(A)
    qp = EqualityQP(A, np.ones(30), 0.7, backend="scipy", cache_dir=False, dense_column_threshold=threshold)
    gpu = _CupySolver(qp._solver.A, qp.factorization, torch.device("cpu"))
    v = torch.randn(5, 70, dtype=torch.float32)
    torch.testing.assert_close(gpu.project(v), qp._solver.project(v), rtol=1e-6, atol=1e-6)


def test_without_cupy_cuda_inputs_fall_back_to_the_cpu_with_a_warning(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    qp = EqualityQP(random_constraints(3, 6, seed=0), np.ones(3), 1.0, backend="scipy", cache_dir=False)
    with pytest.warns(RuntimeWarning, match="CuPy is not installed"):
        assert qp._solver._device_solver(torch.device("cuda", 0)) is None
