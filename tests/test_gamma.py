"""Gamma and Poisson pieces for deep exponential families (gvae.ops.gamma, gvae.kernels.gamma): values
against SciPy, the implicit reparameterisation gradient against the score function's on a known
expectation, and the refusals. Each VJP is checked against finite differences in test_op_gradients.py."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from gvae import ops, value_and_grad
from gvae.kernels import gamma as kgamma
from tests.gradcheck import check_vjp


def test_values_against_scipy():
    rng = np.random.default_rng(0)
    a, b, u = rng.uniform(0.2, 5, 20), rng.uniform(0.5, 3, 20), rng.uniform(0.01, 0.99, 20)
    np.testing.assert_allclose(ops.gamma_sample(a, b, u), stats.gamma(a, scale=1 / b).ppf(u), rtol=1e-10)
    z = rng.uniform(0.1, 4, 20)
    np.testing.assert_allclose(ops.gamma_log_prob(z, a, b), stats.gamma(a, scale=1 / b).logpdf(z), rtol=1e-10)
    k = rng.poisson(3, 20).astype(float)
    np.testing.assert_allclose(ops.poisson_log_prob(k, b), stats.poisson(b).logpmf(k), rtol=1e-10)
    np.testing.assert_allclose(kgamma.digamma(a), __import__("scipy.special").special.psi(a), rtol=1e-12)


def test_the_kernels_against_scipy_across_their_range():
    """gvae's own float64 maths (gvae.kernels.gamma_cpu) against SciPy's: the gamma quantile for shapes from
    0.05 to 10,000 and uniforms as far out as 1e-300 and 1 - 1e-12, log Gamma and digamma (their poles and
    negative arguments too) and the special values; the incomplete gamma functions against mpmath's."""
    from scipy import special
    from gvae.kernels.gamma_cpu import incomplete
    rng = np.random.default_rng(7)
    a = np.exp(rng.uniform(np.log(0.05), np.log(1e4), 4000))
    u = np.concatenate([rng.uniform(0, 1, 3960), np.repeat([1e-300, 1e-100, 2.0 ** -24, 1e-12, 0.5, 1 - 1e-12,
                                                           1 - 2.0 ** -24, 0.999, 0.001, 1e-30], 4)])
    want = np.maximum(special.gammaincinv(a, u), np.finfo(np.float64).tiny)
    np.testing.assert_allclose(kgamma.gamma_inverse_cdf(a, u), want, rtol=2e-12)
    grid_a, grid_u = np.meshgrid([0.05, 0.5, 1.0, 3.0, 9.99, 10.0, 12.0, 50.0, 1e3, 1e4],
                                 [1e-300, 1e-250, 1e-100, 1e-30, 1e-12, 2.0 ** -24, 0.3, 0.5, 0.7, 1 - 1e-12])
    want = np.maximum(special.gammaincinv(grid_a, grid_u), np.finfo(np.float64).tiny)
    np.testing.assert_allclose(kgamma.gamma_inverse_cdf(grid_a, grid_u), want, rtol=1e-13)
    # P and Q against 30 digits (SciPy's own err by 1e-11 in the far tails at large a, where gvae's do not)
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    a, x = a[:300], a[:300] * np.exp(rng.uniform(-3, 3, 300))
    p, q = np.array([incomplete(ai, xi) for ai, xi in zip(a, x)]).T
    want = np.array([[float(mpmath.gammainc(ai, 0, xi, regularized=True)),
                      float(mpmath.gammainc(ai, xi, mpmath.inf, regularized=True))] for ai, xi in zip(a, x)]).T
    np.testing.assert_allclose(p, want[0], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(q, want[1], rtol=1e-12, atol=1e-300)
    y = np.concatenate([np.exp(rng.uniform(np.log(1e-4), np.log(1e4), 2000)), rng.uniform(-20, 0, 200),
                        [1.4616321449683622]])  # (digamma's positive root)
    np.testing.assert_allclose(kgamma.digamma(y), special.psi(y), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(kgamma.lgamma(y), special.gammaln(y), rtol=1e-13, atol=1e-15)
    poles = np.array([0.0, -0.0, -1.0, -7.0, np.nan])
    np.testing.assert_array_equal(kgamma.digamma(poles), special.psi(poles))
    np.testing.assert_array_equal(kgamma.lgamma(poles), special.gammaln(poles))
    ends = kgamma.gamma_inverse_cdf(np.array([2.0, 2.0, 0.0, -1.0, np.nan]), np.array([0.0, 1.0, 0.5, 0.5, 0.5]))
    np.testing.assert_array_equal(ends, [np.finfo(np.float64).tiny, np.inf, np.nan, np.nan, np.nan])
    rates, us = np.array([0.0, 0.0, 3.0, 3.0, -1e-30, np.inf, np.nan, 3.0, 3.0]), np.array([0.0, 1.0, 0.0, 1.0, 0.5,
                                                                                              0.5, 0.5, -0.1, np.nan])
    # (u = 1: no count's CDF exceeds it, so the draw is the largest count)
    np.testing.assert_array_equal(kgamma.poisson_draw(rates, us, 80), [0, 80, 0, 80] + [np.nan] * 5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernels_record_and_replay_on_new_data(dtype):
    """Each kernel called while a step is recorded gives what it gives unrecorded, and the replay computes
    it again from what its inputs hold then (the training step's native replay)."""
    from gvae.kernels.cpu import programs
    rng = np.random.default_rng(8)
    a, u, z = (rng.uniform(lo, hi, 300).astype(dtype) for lo, hi in ((0.2, 8), (0.01, 0.99), (0.1, 5)))
    calls = [lambda: kgamma.gamma_inverse_cdf(a, u), lambda: kgamma.gamma_draw_shape_grad(a, z),
             lambda: kgamma.lgamma(a), lambda: kgamma.digamma(a), lambda: kgamma.poisson_draw(a, u, 40)]
    for call in calls:
        plain = call()
        with programs.recording() as program:
            recorded = call()
        assert program.refused is None and len(program) >= 1
        np.testing.assert_array_equal(recorded, plain)
        for v in (a, u, z):
            v[...] = v[::-1].copy()
        recorded[...] = np.nan
        program.run()
        np.testing.assert_array_equal(recorded, call())


def test_the_draws_shape_derivative_is_the_inverse_cdfs_difference_quotient():
    """dz/dalpha at fixed u against a central difference of SciPy's inverse CDF in alpha, float64."""
    rng = np.random.default_rng(1)
    a, u = rng.uniform(0.2, 6.0, 50), rng.uniform(0.01, 0.99, 50)
    h = 1e-6 * a
    want = (stats.gamma(a + h).ppf(u) - stats.gamma(a - h).ppf(u)) / (2 * h)
    np.testing.assert_allclose(kgamma.gamma_draw_shape_grad(a, kgamma.gamma_inverse_cdf(a, u)), want, rtol=1e-5)


def test_the_implicit_gradient_is_unbiased_with_less_variance_than_the_score_function():
    """d/dalpha E[z^2] for z ~ Gamma(alpha, beta) is (2 alpha + 1) / beta^2: the mean of 20,000 implicit
    (reparameterised) estimates and of 20,000 score-function estimates each within 5 standard errors of it;
    the implicit one's variance is the smaller by far."""
    alpha, beta, n = np.array(1.7), np.array(1.3), 20_000
    rng = np.random.default_rng(3)
    u = rng.uniform(size=n)
    _, (g_alpha, _) = value_and_grad(lambda a, b: ops.sum(ops.gamma_sample(a, b, u) ** 2), argnums=(0, 1))(
        np.full(n, alpha), np.full(n, beta))
    z = stats.gamma(alpha, scale=1 / beta).ppf(u)
    score = z ** 2 * (np.log(beta) + np.log(z) - __import__("scipy.special").special.psi(alpha))
    exact = (2 * alpha + 1) / beta ** 2
    for est in (g_alpha, score):
        assert abs(est.mean() - exact) < 5 * est.std() / np.sqrt(n)
    assert g_alpha.var() < score.var() / 5


def test_refusals():
    with pytest.raises(ValueError, match="must have one shape"):
        kgamma.gamma_inverse_cdf(np.ones(3), np.ones(2) * 0.5)
    with pytest.raises(ValueError, match="alpha .3,. and z .2,. must have one shape"):
        kgamma.gamma_draw_shape_grad(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="no gradient with respect to the counts"):
        value_and_grad(lambda k: ops.sum(ops.poisson_log_prob(k, np.ones(2))))(np.ones(2))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2 ** 16), python_float=st.booleans())
def test_a_gamma_density_with_host_scalar_parameters(seed, python_float):
    """alpha and beta as host scalars (a prior's constants, kept off the device): the values of the array
    path and SciPy's, and the gradient in z against central differences in float64."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.1, 4, (3, 4))
    a, b = rng.uniform(0.2, 5), rng.uniform(0.5, 3)
    a, b = (float(a), float(b)) if python_float else (np.float64(a), np.float64(b))
    got = ops.gamma_log_prob(z, a, b)
    np.testing.assert_allclose(got, ops.gamma_log_prob(z, np.full(z.shape, a), np.full(z.shape, b)), rtol=1e-13)
    np.testing.assert_allclose(got, stats.gamma(a, scale=1 / b).logpdf(z), rtol=1e-10)
    check_vjp(lambda t: ops.gamma_log_prob(t, a, b), [z], argnum=0, seed=seed)
