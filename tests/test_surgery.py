"""ELBO surgery (gvae.evaluation.surgery) on the factor-analysis model of tests/test_gaps.py, where q(z|x) is
the exact posterior N(A (x - b), P^-1), one covariance for every x, so that the aggregate posterior of N
points is a known mixture of N Gaussians: the split against the closed-form KL, against a dense NumPy
computation of the same estimate from the same samples, and against a large-sample reference."""
import math

import numpy as np
import pytest
from scipy.special import logsumexp

from gvae.kernels import to_device
from gvae.evaluation.analysis import analyze, surgery
from gvae.evaluation.surgery import elbo_surgery
from tests import fake_device as fake
from tests.test_gaps import D, FAMILIES, exact_encoder, exact_posterior, fa_data, fa_model

fake.install()


def exact_model(n, scale=1.0):
    """(model, params, x (n, N), P, posterior means (n, D)): the "full" family's encoder set to the exact
    posterior of n points of the factor-analysis model with its loadings W times ``scale`` (smaller: broader
    posteriors that overlap more)."""
    model, params, W, b, psi = fa_model("full")
    W = W * scale
    params["dec.W0"][...] = W.T
    exact_encoder(model, params, W, b, psi)
    x = fa_data(W, b, psi, n=n)
    P, mean, _ = exact_posterior(W, b, psi, x)
    return model, params, x, P, mean


def random_posteriors(name):
    """(model, heads (9, head size), eps (5, 9, D)): the family's q of 9 points from random heads (a
    different q per point) and the noise of 5 samples of each."""
    model = fa_model(name)[0]
    rng = np.random.default_rng(1)
    return model, rng.standard_normal((9, model.layers[0].family.head_size(D))) * 0.5, rng.standard_normal((5, 9, D))


def dense_log_q(z, mean, precisions):
    """log N(z_i; mean_m, precisions_m^-1) for every sample z_i (M, D) and every point m: (M, N), float64."""
    diff = z[:, None, :] - mean[None]
    quad = np.einsum("imj,mjk,imk->im", diff, precisions, diff)
    return -0.5 * (quad - np.linalg.slogdet(precisions)[1] + mean.shape[-1] * math.log(2 * math.pi))


def dense_mutual_information(z, mean, precisions):
    """Each point's mean over its samples z (S, N, D) of log q(z|x_n) - log q(z), q(z) the equal mixture
    of the N Gaussians, densely: (N,)."""
    s, n, d = z.shape
    log_q = dense_log_q(z.reshape(-1, d), mean, precisions).reshape(s, n, n)
    own = log_q[:, np.arange(n), np.arange(n)]
    return (own - (logsumexp(log_q, axis=-1) - math.log(n))).mean(axis=0)


def test_the_parts_add_up_to_the_closed_form_kl():
    """mean KL = I + marginal KL to rounding, with each point's KL against the closed form
    0.5 (tr P^-1 + |m|^2 - d + log det P); every sample's log q(z|x_n) - log q(z) is at most log N."""
    model, params, x, P, mean = exact_model(12)
    q = model.encode(params, x)
    per = elbo_surgery(model.layers[0].family, q, np.random.default_rng(0).standard_normal((7, 12, D)))
    kl = 0.5 * (np.trace(np.linalg.inv(P)) + np.sum(mean * mean, -1) - D + np.linalg.slogdet(P)[1])
    np.testing.assert_allclose(per["mean_kl"], kl, rtol=1e-10)
    np.testing.assert_allclose(per["mutual_information"] + per["marginal_kl"], per["mean_kl"], rtol=1e-14, atol=1e-13)
    assert np.all(per["mutual_information"] <= math.log(12) + 1e-12)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_estimate_against_dense_numpy_from_the_same_samples(name):
    """Any family's q (random heads, a different q per point): gvae's chunked estimate (a chunk of one
    sample, the smallest memory bound) against the dense mixture of the family's precisions."""
    model, h, eps = random_posteriors(name)
    q = model.layers[0].family.split(h, D)
    per = elbo_surgery(model.layers[0].family, q, eps, memory_mb=0)
    z = model.layers[0].family.sample(q, eps)
    expected = dense_mutual_information(z, q.mu, model.layers[0].family.precision(q))
    np.testing.assert_allclose(per["mutual_information"], expected, rtol=1e-10, atol=1e-12)
    whole = elbo_surgery(model.layers[0].family, q, eps)  # every sample in one chunk: the same numbers
    for key in per:
        np.testing.assert_allclose(per[key], whole[key], rtol=1e-12)


@pytest.mark.parametrize("name", ["diagonal", "ar1", "rank1", "extgrid"])
def test_the_estimate_stays_on_the_device(name):
    """On a device that refuses host conversions (tests/fake_device.py): the CPU's numbers, no implicit
    conversion, and the host read only for the three results."""
    model, h, eps = random_posteriors(name)
    cpu = elbo_surgery(model.layers[0].family, model.layers[0].family.split(h, D), eps, memory_mb=0)
    fake.COUNTS.clear()
    device = elbo_surgery(model.layers[0].family, model.layers[0].family.split(to_device(h, "fake"), D), to_device(eps, "fake"),
                          memory_mb=0)
    assert fake.COUNTS["implicit"] == 0 and fake.COUNTS["sync"] == 3
    for key in cpu:
        np.testing.assert_array_equal(device[key], cpu[key])


@pytest.mark.slow
@pytest.mark.parametrize("scale, low, high", [(1.0, 3.5, 3.69), (0.3, 1.5, 2.2)])
def test_the_estimate_against_a_large_sample_reference(scale, low, high):
    """analysis.surgery with 20 samples per point against the same split with 4000 samples per point
    (dense NumPy, independent noise), within 4 of the standard errors it reports: posteriors that barely
    overlap (I near log 40 = 3.69) and ones that do (I about half of it). The standard error over the
    points includes how the points differ, so it is larger than the Monte Carlo error alone (1.1 and 2.1
    times here, from 30 seeds)."""
    model, params, x, P, mean = exact_model(40, scale)
    result = surgery(model, params, x, np.random.default_rng(2), samples=20, at=0)
    assert result["n_points"] == 40 and result["samples"] == 20 and result["log_n"] == pytest.approx(math.log(40))
    R = np.linalg.cholesky(P)  # z = m + R^-T eps ~ N(m, P^-1)
    eps = np.random.default_rng(3).standard_normal((4000, 40, D))
    z = mean + np.linalg.solve(R.T, eps.reshape(-1, D).T).T.reshape(eps.shape)
    mutual = dense_mutual_information(z, mean, np.broadcast_to(P, (40, D, D))).mean()
    kl = 0.5 * (np.trace(np.linalg.inv(P)) + np.mean(np.sum(mean * mean, -1)) - D + np.linalg.slogdet(P)[1])
    assert low < mutual < high
    assert result["mean_kl"] == pytest.approx(kl, rel=1e-10)
    assert abs(result["mutual_information"] - mutual) < 4 * result["mutual_information_sem"]
    assert abs(result["marginal_kl"] - (kl - mutual)) < 4 * result["marginal_kl_sem"]


def test_analyze_refuses_bad_surgery_settings_before_any_work():
    model, params, x, _, _ = exact_model(3)
    with pytest.raises(ValueError, match="samples of z per point of the ELBO surgery must be an integer >= 1, got 0"):
        analyze(model, params, x, surgery_samples=0)
    with pytest.raises(ValueError, match="integer from 1 to 3, got 0"):
        analyze(model, params, x, surgery_points=0)
