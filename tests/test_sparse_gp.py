"""The sparse GP layer's bound (gvae.models.deep_gp.model): the exact log marginal likelihood when the inducing inputs
are the data's, a lower bound otherwise that rises to it as inducing inputs are added, and its gradients
(through the dense algebra's own VJPs) against central differences in float64."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scipy.stats import multivariate_normal

from gvae import ops
from gvae.models.deep_gp.model import gplvm_bound, rbf_psi_statistics, sparse_gp_bound
from tests.gradcheck import check_vjp


def exact_gp_log_likelihood(X, Y, lengthscales, variance, noise):
    """The exact log marginal likelihood sum_columns log N(y; 0, K_nn + s^2 I), dense, with SciPy."""
    K = ops.rbf_kernel(X, X, lengthscales, variance) + noise * np.eye(len(X))
    return float(sum(multivariate_normal(np.zeros(len(X)), K).logpdf(Y[:, j]) for j in range(Y.shape[1])))


def problem(seed, n=12, d=2, p=2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = np.sin(X @ rng.standard_normal((d, p))) + 0.1 * rng.standard_normal((n, p))
    return rng, X, Y, rng.uniform(0.7, 1.5, d), np.array(rng.uniform(0.5, 1.5)), np.array(0.05)


@settings(max_examples=20)
@given(seed=st.integers(0, 2 ** 16))
def test_the_bound_is_the_exact_likelihood_at_the_data_and_below_it_elsewhere(seed):
    rng, X, Y, ls, v, noise = problem(seed)
    exact = exact_gp_log_likelihood(X, Y, ls, v, noise)
    assert float(sparse_gp_bound(X, Y, X, ls, v, noise, jitter=1e-10)) == pytest.approx(exact, abs=1e-5)
    bounds = [float(sparse_gp_bound(X, Y, X[:m], ls, v, noise)) for m in (2, 6, 12)]
    assert all(b <= exact + 1e-6 for b in bounds)
    assert bounds[0] <= bounds[1] + 1e-6 <= bounds[2] + 2e-6  # nested inducing sets: the bound only rises


@settings(max_examples=10)
@given(seed=st.integers(0, 2 ** 16))
def test_the_bounds_gradients(seed):
    rng, X, Y, ls, v, noise = problem(seed, n=7)
    Z = rng.standard_normal((3, 2))
    args = [X, Y, Z, ls, v, noise]
    for argnum in range(6):
        check_vjp(lambda *a: sparse_gp_bound(*a), args, argnum=argnum, seed=seed, rtol=1e-5, atol=1e-7)


def test_the_psi_statistics_are_the_kernels_expectations():
    """psi1 and psi2 in closed form against the means over 200,000 draws of x_n ~ N(mu_n, diag S_n), within 5
    standard errors; psi0 = n v."""
    rng = np.random.default_rng(0)
    mu, S, Z = rng.standard_normal((3, 2)), rng.uniform(0.1, 0.8, (3, 2)), rng.standard_normal((4, 2))
    ls, v = np.array([0.8, 1.3]), np.array(1.4)
    psi0, psi1, psi2 = rbf_psi_statistics(mu, S, Z, ls, v)
    assert float(psi0) == pytest.approx(3 * 1.4)
    x = mu[:, None, :] + np.sqrt(S)[:, None, :] * rng.standard_normal((3, 200_000, 2))  # (n, draws, d)
    k = v * np.exp(-0.5 * (((x[:, :, None, :] - Z[None, None]) / ls) ** 2).sum(-1))    # (n, draws, m)
    for n in range(3):
        mean, se = k[n].mean(0), k[n].std(0) / np.sqrt(k.shape[1])
        assert np.all(np.abs(psi1[n] - mean) < 5 * se)
    outer = np.einsum("nsa,nsb->sab", k, k)  # sum over n of k k^T, per draw
    mean, se = outer.mean(0), outer.std(0) / np.sqrt(outer.shape[0])
    assert np.all(np.abs(psi2 - mean) < 5 * se + 1e-12)


def test_the_gplvm_bound_with_certain_inputs_is_the_sparse_bound():
    rng, X, Y, ls, v, noise = problem(4)
    Z = rng.standard_normal((5, 2))
    S = np.full(X.shape, 1e-12)
    kl = 0.5 * np.sum(S + X * X - 1.0 - np.log(S))
    assert float(gplvm_bound(X, S, Y, Z, ls, v, noise)) + kl == pytest.approx(
        float(sparse_gp_bound(X, Y, Z, ls, v, noise)), abs=1e-6)


@settings(max_examples=8)
@given(seed=st.integers(0, 2 ** 16))
def test_the_gplvm_bounds_gradients(seed):
    rng, X, Y, ls, v, noise = problem(seed, n=5)
    S, Z = rng.uniform(0.1, 0.6, X.shape), rng.standard_normal((3, 2))
    args = [X, S, Y, Z, ls, v, noise]
    for argnum in (0, 1, 3, 4, 5, 6):
        check_vjp(lambda *a: gplvm_bound(*a), args, argnum=argnum, seed=seed, rtol=1e-5, atol=1e-7)
