"""Dense algebra for Gaussian-process layers (gvae.ops.gp, gvae.kernels.dense_linalg): forward values
against NumPy and SciPy, and a GP marginal likelihood's gradient through them. Each op's own VJP is
checked against finite differences in tests/test_op_gradients.py's table."""
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings, strategies as st

from gvae import ops
from gvae.autodiff import value_and_grad
from gvae.kernels import dense_linalg

seeds = st.integers(0, 2 ** 16)


def spd(rng, batch, n):
    A = rng.standard_normal(batch + (n, n))
    return A @ A.swapaxes(-1, -2) + n * np.eye(n)


def lower(rng, batch, n):
    L = np.tril(rng.standard_normal(batch + (n, n)) * 0.3)
    L[..., range(n), range(n)] = rng.uniform(0.8, 1.5, batch + (n,))
    return L


@given(seed=seeds, n=st.integers(1, 6), batch=st.sampled_from([(), (3,), (2, 2)]))
def test_cholesky_forward_and_gradient(seed, n, batch):
    rng = np.random.default_rng(seed)
    A = spd(rng, batch, n)
    np.testing.assert_allclose(dense_linalg.cholesky(A), np.linalg.cholesky(A), rtol=1e-12, atol=1e-12)


@given(seed=seeds, n=st.integers(1, 6), m=st.integers(1, 3), batch=st.sampled_from([(), (3,)]),
       transposed=st.booleans())
def test_solve_triangular_forward_and_gradients(seed, n, m, batch, transposed):
    rng = np.random.default_rng(seed)
    L, B = lower(rng, batch, n), rng.standard_normal(batch + (n, m))
    X = dense_linalg.solve_triangular(L, B, transposed)
    Lf, Bf, Xf = L.reshape(-1, n, n), B.reshape(-1, n, m), X.reshape(-1, n, m)
    for i in range(len(Lf)):
        np.testing.assert_allclose(Xf[i], scipy.linalg.solve_triangular(Lf[i], Bf[i], lower=True, trans=int(transposed)),
                                   rtol=1e-12, atol=1e-12)


@given(seed=seeds, n=st.integers(1, 6))
def test_cholesky_logdet(seed, n):
    rng = np.random.default_rng(seed)
    L = lower(rng, (2,), n)
    # (atol: a log-determinant near 0 is a sum of logs near 0, whose last bits are absolute, some 1e-16 each)
    np.testing.assert_allclose(ops.cholesky_logdet(L), np.linalg.slogdet(L @ L.swapaxes(-1, -2))[1], rtol=1e-12,
                               atol=1e-13)


@given(seed=seeds, N=st.integers(1, 5), M=st.integers(1, 5), d=st.integers(1, 3))
def test_rbf_kernel(seed, N, M, d):
    rng = np.random.default_rng(seed)
    X, Z = rng.standard_normal((N, d)), rng.standard_normal((M, d))
    ls, v = rng.uniform(0.5, 2.0, d), np.array(rng.uniform(0.5, 2.0))
    expected = v * np.exp(-0.5 * (((X[:, None] - Z[None]) / ls) ** 2).sum(-1))
    np.testing.assert_allclose(ops.rbf_kernel(X, Z, ls, v), expected, rtol=1e-12)


@given(seed=seeds, N=st.integers(1, 5), M=st.integers(1, 5), d=st.integers(1, 3))
def test_linear_kernel(seed, N, M, d):
    rng = np.random.default_rng(seed)
    X, Z, s = rng.standard_normal((N, d)), rng.standard_normal((M, d)), rng.uniform(0.5, 2.0, d)
    np.testing.assert_allclose(ops.linear_kernel(X, Z, s), X @ np.diag(s) @ Z.T, rtol=1e-12, atol=1e-14)


@settings(max_examples=20)
@given(seed=seeds)
def test_a_gp_marginal_likelihood_and_its_gradient(seed):
    """-log N(y; 0, K + s^2 I) through the ops, against SciPy's density and its gradient in the
    lengthscales against central differences of it."""
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((7, 2)), rng.standard_normal((7, 1))
    v, noise = np.array(1.3), 0.1

    def nll(ls):
        L = ops.cholesky(ops.rbf_kernel(X, X, ls, v) + noise * np.eye(7))
        a = ops.solve_triangular(L, y)
        return 0.5 * ops.sum(a * a) + 0.5 * ops.cholesky_logdet(L) + 3.5 * np.log(2 * np.pi)

    def reference(ls):
        K = v * np.exp(-0.5 * (((X[:, None] - X[None]) / ls) ** 2).sum(-1)) + noise * np.eye(7)
        from scipy.stats import multivariate_normal
        return -multivariate_normal(np.zeros(7), K).logpdf(y[:, 0])

    ls = rng.uniform(0.5, 2.0, 2)
    value, grad = value_and_grad(nll)(ls)
    assert float(value) == pytest.approx(reference(ls), rel=1e-10)
    h = 1e-6
    fd = [(reference(ls + h * e) - reference(ls - h * e)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)  # the differences of SciPy's log-density: ~1e-7 noise


def test_bad_matrices_are_named():
    A = np.stack([np.eye(3), -np.eye(3)])
    with pytest.raises(ValueError, match=r"1 of the 2 matrices are not positive definite \(batch indices \[\(1,\)\]"):
        dense_linalg.cholesky(A)
    with pytest.raises(ValueError, match="must be square"):
        dense_linalg.cholesky(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="does not match L"):
        dense_linalg.solve_triangular(np.eye(3), np.zeros((4, 1)))
    with pytest.raises(TypeError, match="share one dtype"):
        dense_linalg.solve_triangular(np.eye(3), np.zeros((3, 1), np.float32))
