"""Products with a mostly-zero left factor (gvae/kernels/sparse_rows_cpu.py): the CSR form against SciPy's,
and kernels.matmul on such factors, whole and split over threads, against a float64 NumPy product."""
import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings, strategies as st

from gvae import kernels
from gvae.kernels import matmul_cpu, sparse_rows_cpu, threads
from gvae.kernels.sparse_rows_cpu import MAX_DENSITY, sparse_rows


def mostly_zero(rng, shape, density, dtype, binary):
    """An array of ``shape`` with floor(density * size) nonzeros (ones when ``binary``) at random places."""
    size = int(np.prod(shape))
    a = np.zeros(size)
    where = rng.choice(size, int(density * size), replace=False)
    a[where] = 1.0 if binary else rng.standard_normal(len(where))
    return a.reshape(shape).astype(dtype)


@given(m=st.integers(1, 30), k=st.integers(1, 50), density=st.floats(0, MAX_DENSITY), transposed=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_the_csr_form_is_scipys(m, k, density, transposed, seed):
    rng = np.random.default_rng(seed)
    a = mostly_zero(rng, (k, m) if transposed else (m, k), density, np.float32, binary=False)
    a = a.T if transposed else a  # a Fortran-ordered (m, k): the layout of x.T in a weight gradient
    form = sparse_rows(a)
    assert form is not None
    reference = scipy.sparse.csr_matrix(a)
    reference.sort_indices()
    for got, expected in zip(form, (reference.indptr, reference.indices, reference.data)):
        np.testing.assert_array_equal(got, expected)


def test_dense_or_strided_factors_have_no_sparse_form():
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((20, 30)).astype(np.float32)
    assert sparse_rows(dense) is None
    assert sparse_rows(np.where(rng.random((20, 30)) < 0.5, 1.0, 0.0)) is None  # above MAX_DENSITY
    sparse = mostly_zero(rng, (20, 30), 0.1, np.float32, binary=True)
    assert sparse_rows(sparse) is not None and sparse_rows(sparse[:, ::2]) is None  # neither C nor F
    assert sparse_rows(sparse, max_density=0.0) is None
    at_most = np.zeros((10, 10), np.float32)
    at_most.flat[:20] = 1.0  # 20% nonzero: the limit itself
    assert sparse_rows(at_most, max_density=0.2) is not None
    at_most.flat[99] = 1.0
    assert sparse_rows(at_most, max_density=0.2) is None
    front_loaded = np.zeros((100, 50), np.float32)  # 16% nonzero, all in the rows the probe reads
    front_loaded[:8] = 1.0
    assert sparse_rows(front_loaded) is None and sparse_rows(front_loaded[::-1].copy()) is not None


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n} threads")
def split_sparse(request, monkeypatch):
    """gvae's threads on, and every product split however small."""
    monkeypatch.setattr(threads, "MIN_BLOCK_SECONDS", 0.0)
    monkeypatch.setattr(matmul_cpu, "MIN_FLOPS", 0.0)
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
    product = sparse_rows_cpu.csr_product
    monkeypatch.setattr(matmul_cpu, "csr_product", lambda *args: calls.append(args[-2:]) or product(*args))
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
