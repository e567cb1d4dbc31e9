"""The sparse GP layer's bound (gvae.model.gp): the exact log marginal likelihood when the inducing inputs
are the data's, a lower bound otherwise that rises to it as inducing inputs are added, and its gradients
(through the dense algebra's own VJPs) against central differences in float64."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gvae.model.gp import exact_gp_log_likelihood, sparse_gp_bound
from tests.gradcheck import check_vjp


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
