"""The logit-normal likelihood's sampler on the 28 x 28 pixel lattice: its logit-space covariance is
exactly (L L^T)^-1, the precision its log-density uses (a dense float64 reference)."""
import numpy as np
import pytest

from gvae import kernels
from gvae.model.gaussian import band_sample
from gvae.model.likelihoods import get_likelihood
from gvae.model.posteriors import dense_factor


@pytest.mark.slow
@pytest.mark.parametrize("name", ["logitnormal-grid", "logitnormal-extgrid"])
def test_sampler_covariance_is_the_inverse_precision_at_28x28(name):
    lik = get_likelihood(name, 784)
    rng = np.random.default_rng(0)
    K = len(lik.offsets)
    raw = rng.normal(0.0, 0.15, (1, K, 784))  # one decoder output's band rows, float64
    L = lik._factor(np.concatenate([np.zeros((1, 784)), raw.reshape(1, -1)], axis=-1), None)
    # The sampler is linear in eps: its columns for eps = e_j give the map A with y - mu = A eps,
    # so Cov(y) = A A^T exactly.
    A = band_sample(L, lik.offsets, np.zeros(784), np.eye(784)[:, None, :])[:, 0, :].T
    Ld = dense_factor(L[0], lik.offsets)
    sigma = np.linalg.inv(Ld @ Ld.T)
    np.testing.assert_allclose(A @ A.T, sigma, rtol=1e-8, atol=1e-10 * np.abs(sigma).max())
    # and the density it is paired with: log N(mu + A eps; mu, Sigma) = log N(eps; 0, I) + log det L
    eps = rng.standard_normal(784)
    y = A @ eps
    dens = lik.log_prob(np.concatenate([np.zeros((1, 784)), raw.reshape(1, -1)], axis=-1)[None],
                        1 / (1 + np.exp(-y))[None], None)
    sign, logdet_sigma = np.linalg.slogdet(sigma)
    expected = -0.5 * y @ np.linalg.solve(sigma, y) - 0.5 * logdet_sigma - 392 * np.log(2 * np.pi)
    jacobian = -np.sum(np.log(1 / (1 + np.exp(-y))) + np.log1p(-1 / (1 + np.exp(-y))))
    assert dens.shape == (1, 1)
    np.testing.assert_allclose(float(dens[0, 0]), expected + jacobian, rtol=1e-9)
    assert kernels.band_logdet(L).shape == (1,)
