"""Products with a mostly-zero left factor (gvae/kernels/sparse_rows_cpu.py): the CSR form of a block against SciPy's,
and kernels.matmul on such factors, whole and split over threads, against a float64 NumPy product."""
import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings, strategies as st

from gvae import kernels
from gvae.kernels import matmul_cpu, sparse_rows_cpu
from gvae.kernels.cpu import threads
from gvae.kernels.sparse_rows_cpu import MAX_DENSITY, sparse_factor


def mostly_zero(rng, shape, density, dtype, binary):
    """An array of ``shape`` with floor(density * size) nonzeros (ones when ``binary``) at random places."""
    size = int(np.prod(shape))
    a = np.zeros(size)
    where = rng.choice(size, int(density * size), replace=False)
    a[where] = 1.0 if binary else rng.standard_normal(len(where))
    return a.reshape(shape).astype(dtype)


@given(m=st.integers(1, 30), k=st.integers(1, 50), density=st.floats(0, MAX_DENSITY), transposed=st.booleans(),
       block=st.tuples(st.floats(0, 1), st.floats(0, 1)), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**32 - 1))
def test_the_csr_form_of_a_block_is_scipys(m, k, density, transposed, block, dtype, seed):
    rng = np.random.default_rng(seed)
    a = mostly_zero(rng, (k, m) if transposed else (m, k), density, dtype, binary=False)
    a = a.T if transposed else a  # a Fortran-ordered (m, k): the layout of x.T in a weight gradient
    if a.size:  # NaN and inf are nonzeros, -0.0 a zero
        a.T.flat[rng.integers(a.size, size=2)] = rng.choice([-0.0, np.nan, np.inf], 2)
    found = sparse_factor(a, max_density=1.0)
    assert found is not None
    base, is_transposed, nonzeros = found
    assert base.flags.c_contiguous and nonzeros == np.count_nonzero(a)
    np.testing.assert_array_equal(base.T if is_transposed else base, a)  # (one row or column: either layout)
    lo, hi = sorted(int(f * m) for f in block)
    form = sparse_rows_cpu.block_form(base, is_transposed, nonzeros, lo, hi)
    reference = scipy.sparse.csr_matrix(np.where(np.isnan(a), 1.0, a)[lo:hi])  # SciPy drops NaN's position
    reference.sort_indices()
    for got, expected in zip(form[:2], (reference.indptr, reference.indices)):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(form[2], a[lo:hi][a[lo:hi] != 0])  # row by row, in column order


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n} threads")
def split_sparse(request, monkeypatch):
    """gvae's threads on, and every product split however small."""
    monkeypatch.setattr(threads, "MIN_BLOCK_SECONDS", 0.0)
    monkeypatch.setattr(threads, "WAKE_SECONDS", 0.0)  # handed over whether a worker sleeps or not
    monkeypatch.setattr(matmul_cpu, "MIN_FLOPS", 0.0)
    monkeypatch.setattr(matmul_cpu, "MIN_SIDE_BY_SIDE", 0.0)
    monkeypatch.setattr(matmul_cpu, "MIN_ROWS", 1)
    monkeypatch.setattr(matmul_cpu, "MIN_SPARSE_WORK", 0.0)
    kernels.set_threads(request.param)
    yield request.param
    kernels.set_threads(1)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # the fixture sets thresholds
@given(m=st.integers(1, 40), k=st.integers(1, 60), n=st.integers(1, 40), density=st.floats(0, MAX_DENSITY),
       dtype=st.sampled_from([np.float32, np.float64]), binary=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_products_of_mostly_zero_factors_match_numpy(split_sparse, m, k, n, density, dtype, binary, seed):
    rng = np.random.default_rng(seed)
    x = mostly_zero(rng, (m, k), density, dtype, binary)
    W = rng.standard_normal((k, n)).astype(dtype)
    g = rng.standard_normal((m, n)).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    # The first layer's product and its weight gradient (x.T: Fortran-ordered), alone and side by side.
    np.testing.assert_allclose(kernels.matmul(x, W), x.astype(float) @ W.astype(float), **tol)
    out = np.full((k, n), np.nan, dtype)
    assert kernels.matmul(x.T, g, out=out) is out
    np.testing.assert_allclose(out, x.T.astype(float) @ g.astype(float), **tol)
    both = kernels.matmuls([(x, W, None), (x.T, g, None)])
    np.testing.assert_allclose(both[0], x.astype(float) @ W.astype(float), **tol)
    np.testing.assert_allclose(both[1], x.T.astype(float) @ g.astype(float), **tol)


def test_the_sparse_path_is_taken_for_a_binarised_batch(monkeypatch):
    rng = np.random.default_rng(3)
    x = mostly_zero(rng, (100, 784), 0.13, np.float32, binary=True)
    W = rng.standard_normal((784, 50)).astype(np.float32)
    calls = []
    task = sparse_rows_cpu.sparse_task
    monkeypatch.setattr(matmul_cpu, "sparse_task", lambda *args: calls.append(args[-2:]) or task(*args))
    np.testing.assert_allclose(kernels.matmul(x, W), x @ W, rtol=1e-5, atol=1e-5)
    assert calls == [(0, 100)]
    calls.clear()
    kernels.matmul(rng.standard_normal((100, 784)).astype(np.float32), W)
    assert calls == []


def test_zeros_of_the_sparse_factor_skip_what_they_multiply():
    # As in scipy.sparse: a zero times inf or nan adds nothing (the dense product gives nan).
    x = np.zeros((3, 40), np.float32)
    x[1, 2] = 1.0
    W = np.ones((40, 4), np.float32)
    W[5] = np.inf
    W[7, 1] = np.nan
    got = kernels.matmul(x, W)
    np.testing.assert_array_equal(got, [[0] * 4, [1] * 4, [0] * 4])
    W[2, 3] = np.inf
    assert kernels.matmul(x, W)[1, 3] == np.inf


@given(m=st.integers(0, 12), k=st.integers(0, 40), density=st.floats(0, 1), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_the_probe_counts_nonzeros_as_numpy_does(m, k, density, seed, dtype):
    rng = np.random.default_rng(seed)
    a = mostly_zero(rng, (m, k), density, dtype, binary=False)
    if a.size:  # -0.0 is zero, nan and inf are not
        a.flat[rng.integers(a.size, size=3)] = rng.choice([-0.0, np.nan, np.inf], 3)
    assert sparse_rows_cpu._nonzeros(a) == np.count_nonzero(a)
