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


def _mp_poisson_tails(k, rate):
    """(P(K <= k), P(K > k)) for K ~ Poisson(rate) to 40 digits: the series of the regularised lower
    incomplete gamma P(k + 1, rate) = P(K > k) summed in mpmath, its complement the other."""
    import mpmath
    with mpmath.workdps(40):
        a, x = mpmath.mpf(k) + 1, mpmath.mpf(rate)
        term = total = 1 / a
        shape, digits = a, mpmath.mpf(10) ** -35
        while term > total * digits:
            shape += 1
            term *= x / shape
            total += term
        upper = total * mpmath.exp(a * mpmath.log(x) - x - mpmath.loggamma(a))
        return 1 - upper, upper


def _is_the_least_count(k, rate, u):
    """Whether k is the least count with P(K <= k) > u, decided in 40 digits in the tail that keeps them (the
    tails at k - 1 from those at k and P(K = k): one series, which at rates near 1e7 takes seconds)."""
    import mpmath
    u = mpmath.mpf(float(u))
    with mpmath.workdps(40):
        lower, upper = _mp_poisson_tails(k, rate)
        at_k = mpmath.exp(k * mpmath.log(rate) - rate - mpmath.loggamma(k + 1)) if k > 0 else 0
        if u >= 0.5:
            passes, before = upper < 1 - u, k == 0 or upper + at_k >= 1 - u
        else:
            passes, before = lower > u, k == 0 or lower - at_k <= u
    return bool(passes and before)


def test_poisson_draws_past_the_exponentials_underflow():
    """The counts at rates where e^-rate is subnormal or zero: the medians, not the walk's end."""
    k = ops.poisson_draw(np.array([700.0, 745.0, 746.0, 800.0]), np.full(4, 0.5), 4000)
    np.testing.assert_array_equal(k, stats.poisson.ppf(0.5, [700.0, 745.0, 746.0, 800.0]))


@settings(max_examples=40, deadline=None)
@given(log_rate=st.floats(np.log(1e-8), np.log(1e7)), tail=st.floats(np.log(1e-12), np.log(0.5)),
       side=st.sampled_from(["lower", "upper", "uniform"]), uniform=st.floats(0.0, 1.0, exclude_max=True))
def test_poisson_draws_are_the_inverse_cdf_at_every_rate(log_rate, tail, side, uniform):
    """The count at rates from 1e-8 to 1e7 and uniforms from 1e-12 to 1 - 1e-12 is SciPy's poisson.ppf, or,
    where the two differ (SciPy's CDF loses digits in the upper tail at large rates), provably the least
    count whose CDF passes u, decided in 40 digits."""
    rate = float(np.exp(log_rate))
    u = {"lower": np.exp(tail), "upper": 1.0 - np.exp(tail), "uniform": uniform}[side]
    k = float(kgamma.poisson_draw(np.array([rate]), np.array([u]), 2 ** 40)[0])
    if k != stats.poisson.ppf(u, rate):
        assert _is_the_least_count(k, rate, u)


@pytest.mark.slow
def test_poisson_draws_agree_with_scipy_in_bulk_and_beyond_the_exact_search():
    """20,000 draws over the same ranges: SciPy's answer but for a few upper-tail items at large rates,
    each decided in 40 digits for gvae; above 1e9 the Cornish-Fisher count within one of SciPy's; float32
    rates give the float64 counts of the same rates; ``most`` caps the count."""
    rng = np.random.default_rng(11)
    n = 20_000
    rate = np.exp(rng.uniform(np.log(1e-8), np.log(1e7), n))
    u = np.concatenate([rng.uniform(0, 1, n - 2000), np.exp(rng.uniform(np.log(1e-12), np.log(0.5), 1000)),
                        1 - np.exp(rng.uniform(np.log(1e-12), np.log(0.5), 1000))])
    k = kgamma.poisson_draw(rate, u, 2 ** 40)
    differ = np.flatnonzero(k != stats.poisson.ppf(u, rate))
    assert differ.size < n / 500
    for i in differ[:5]:
        assert _is_the_least_count(k[i], rate[i], u[i])
    huge = np.exp(rng.uniform(np.log(2e9), np.log(1e14), 200))
    want = stats.poisson.ppf(u[:200], huge)
    known = np.isfinite(want)  # (SciPy gives NaN at some of these rates)
    assert known.sum() > 100
    assert np.max(np.abs(kgamma.poisson_draw(huge, u[:200], 2 ** 60) - want)[known]) <= 1
    small = rate[rate < 1e6].astype(np.float32)
    np.testing.assert_array_equal(kgamma.poisson_draw(small, np.full(small.shape, 0.3, np.float32), 2 ** 40),
                                  kgamma.poisson_draw(small.astype(np.float64), np.full(small.shape, 0.3), 2 ** 40))
    np.testing.assert_array_equal(kgamma.poisson_draw(np.array([5e6, 1e-3]), np.array([0.999, 0.999]), 7), [7, 0])


def _mp_shape_derivative(a, x):
    """dx/da at fixed P(a, x) in 30 digits: -(dP/da) / p(x; a), mpmath's derivative of its regularised
    incomplete gamma function."""
    import mpmath
    with mpmath.workdps(30):
        a, x = mpmath.mpf(float(a)), mpmath.mpf(float(x))
        slope = mpmath.diff(lambda s: mpmath.gammainc(s, 0, x, regularized=True), a)
        return float(-slope / mpmath.exp((a - 1) * mpmath.log(x) - x - mpmath.loggamma(a)))


@settings(max_examples=30, deadline=None)
@given(log_a=st.floats(np.log(1e-4), np.log(1e4)), log_tail=st.floats(np.log(1e-300), np.log(0.5)),
       upper=st.booleans())
def test_the_draws_shape_derivative_against_mpmath(log_a, log_tail, upper):
    """dz/dalpha of the draw z = P^-1(alpha, u) for shapes from 1e-4 to 1e4 and z over the whole support
    (u from 1e-300 to 1 - 1e-16) to 1e-12 of mpmath's, in float64: no difference step."""
    pytest.importorskip("mpmath")
    a = float(np.exp(log_a))
    u = 1.0 - max(np.exp(log_tail), 1e-16) if upper else float(np.exp(log_tail))
    z = kgamma.gamma_inverse_cdf(np.array([a]), np.array([u]))
    got = float(kgamma.gamma_draw_shape_grad(np.array([a]), z)[0])
    assert got == pytest.approx(_mp_shape_derivative(a, z[0]), rel=1e-12)


def test_the_shape_derivative_at_small_shapes_and_tiny_draws():
    """Shapes 1e-3 to 7e-3 with draws near 1e-125, where a difference step in the shape lost six digits."""
    pytest.importorskip("mpmath")
    a = np.array([1e-3, 3e-3, 0.0067, 7e-3])
    z = np.array([1e-300, 1e-200, 1.26e-125, 1e-100])
    got = kgamma.gamma_draw_shape_grad(a, z)
    np.testing.assert_allclose(got, [_mp_shape_derivative(ai, zi) for ai, zi in zip(a, z)], rtol=1e-13)


@pytest.mark.slow
def test_the_gamma_quantile_at_a_shape_of_1e8():
    """At shape 1e8 and u = 1e-7 the quantile's P is u to 1e-12 (by 40-digit series): SciPy's gammaincinv is
    7.5e-6 away there, so SciPy is no reference."""
    pytest.importorskip("mpmath")
    import mpmath
    for a, u in ((1e8, 1e-7), (1e7, 1e-7), (1e6, 1 - 1e-7)):
        x = float(kgamma.gamma_inverse_cdf(np.array([a]), np.array([u]))[0])
        lower, upper = _mp_poisson_tails(a - 1, x)  # P(a, x) = P(K > a - 1) for K ~ Poisson(x)
        if u < 0.5:
            assert float(mpmath.log(upper)) == pytest.approx(np.log(u), rel=1e-12)
        else:
            assert float(lower) == pytest.approx(1 - u, rel=1e-8)


@settings(max_examples=25, deadline=None)
@given(b=st.floats(1e-3, 1e3), rate=st.floats(1e-6, 1e3), dtype=st.sampled_from([np.float32, np.float64]))
def test_log_densities_at_the_boundary_of_their_support_are_scipys(b, rate, dtype):
    """0 log 0 = 0: Gamma(0; 1, b) is log b, Poisson(0; 0) is 0 and a pixel off at rate 0 has log probability
    0, as scipy.stats says, in float32 and float64; their gradients are the limits (Gamma's in z at alpha = 1:
    -b; Poisson's in the rate at k = 0: -1; the Bernoulli-Poisson's at x = 0: -1), and an interior point is
    unchanged."""
    t = np.dtype(dtype).type
    zero, one = np.zeros(2, dtype), np.ones(2, dtype)
    beta = np.array([b, 1.0], dtype)
    value, grad = value_and_grad(lambda z: ops.sum(ops.gamma_log_prob(z, one, beta)))(zero)
    np.testing.assert_allclose(value, stats.gamma(1.0, scale=1 / beta.astype(float)).logpdf(0).sum(), rtol=1e-6)
    np.testing.assert_allclose(grad, -beta, rtol=1e-6)
    value, grad = value_and_grad(lambda r: ops.sum(ops.poisson_log_prob(zero, r)))(np.array([0.0, rate], dtype))
    np.testing.assert_allclose(value, stats.poisson([0.0, rate]).logpmf(0).sum(), rtol=1e-6)
    np.testing.assert_array_equal(grad, [-1, -1])
    x = np.array([[0.0, 1.0, 0.0]], dtype)
    r = np.array([[0.0, rate, rate]], dtype)
    value, grad = value_and_grad(lambda q: ops.sum(ops.bernoulli_poisson_loglik(q, x)))(r)
    want = np.log(-np.expm1(-float(rate))) - float(rate)
    np.testing.assert_allclose(value, want, rtol=1e-5 if dtype == np.float32 else 1e-12)
    on = np.exp(-float(rate)) / -np.expm1(-float(rate))  # 1 / expm1(rate), without overflow at large rates
    np.testing.assert_allclose(grad, [[-1.0, on, -1.0]], rtol=1e-5, atol=1e-37)
    assert float(ops.poisson_log_prob(t(3.0), t(rate))) == pytest.approx(stats.poisson(rate).logpmf(3), rel=1e-5)


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
