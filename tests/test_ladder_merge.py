"""The Ladder VAE's precision-weighted merge (``--inference top-down --merge precision``): the diagonal
family's merge is the LVAE's formula; a banded family's merged posterior has the dense merge's
precision, mean, density and KL; the ELBO's gradient through it (the banded Cholesky kernel's VJP
included) against finite differences; the combinations refused; a run from the command line."""
import json

import numpy as np
import pytest
from hypothesis import given, strategies as st

import gvae
from gvae.cli import main
from gvae.model import VAE
from gvae.model.objectives import elbo, iwae_bound
from gvae.model.posteriors import BandedParams, DiagonalParams
from gvae.training import TrainConfig
from tests.gradcheck import check_vjp


def _model(families, grids=(None, None), sizes=(6, 4), seed=0, points=3, samples=2, merge="precision"):
    model = VAE(5, list(sizes), [[7], [6, 3]], "tanh", posterior=list(families), dtype=np.float64,
                posterior_options=[{"grid_shape": g} if g else {} for g in grids], inference="top-down", merge=merge)
    rng = np.random.default_rng(seed)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in model.new_params(rng).views.items()}
    x = rng.random((points, 5))
    eps = rng.standard_normal((samples, points, model.noise_size))
    return model, params, x, eps


def _bottom_up_and_prior(model, params, x, zs):
    """The bottom layer's encoder Gaussian (its head on the bottom-up features, before any merge) and its
    conditional prior p(z_1 | z_2) at the pass's z_2."""
    bottom = model.layers[0]
    q_hat = bottom.family.split(bottom.encoder.head(params, bottom.encoder.features(params, x)), bottom.size)
    return q_hat, model.prior(params, 0, zs[1])


@pytest.mark.parametrize("mean_pass", [False, True])
def test_diagonal_merge_is_the_ladder_vaes_formula(mean_pass):
    """sigma^2 = 1 / (sigma_q^-2 + sigma_p^-2), mu = (mu_q sigma_q^-2 + mu_p sigma_p^-2) sigma^2 (Sonderby
    et al., eq. 18-19), to the last bit; the top layer's posterior is the encoder's alone."""
    model, params, x, eps = _model(("diagonal", "diagonal"))
    qs, zs = model.infer(params, x, None if mean_pass else eps)
    q_hat, p = _bottom_up_and_prior(model, params, x, zs)
    inv_q, inv_p = 1.0 / q_hat.sigma ** 2, 1.0 / p.sigma ** 2  # sigma_q^-2, sigma_p^-2
    var = 1.0 / (inv_q + inv_p)
    mu = (q_hat.mu * inv_q + p.mu * inv_p) * var
    assert isinstance(qs[0], DiagonalParams) and qs[0].mu.shape == (() if mean_pass else (2,)) + (3, 6)
    np.testing.assert_array_equal(qs[0].sigma, np.sqrt(var))
    np.testing.assert_array_equal(qs[0].mu, mu)
    bottom, top = model.layers
    h2 = top.encoder.features(params, bottom.encoder.features(params, x))
    top_q = top.family.split(top.encoder.head(params, h2), top.size)
    np.testing.assert_array_equal(qs[1].mu, top_q.mu)
    np.testing.assert_array_equal(qs[1].sigma, top_q.sigma)
    assert "enc.Wz" not in model.param_shapes()


def _dense_merge(family, q_hat, p):
    """The merge done densely: precision P_hat + diag(s^-2), mean P^-1 (P_hat mu_hat + s^-2 m)."""
    P_hat = family.precision(q_hat)
    lam = 1.0 / p.sigma ** 2
    P = P_hat + lam[..., :, None] * np.eye(lam.shape[-1])
    r = np.einsum("...ij,...j->...i", P_hat, q_hat.mu) + lam * p.mu
    return P, np.linalg.solve(P, r[..., None])[..., 0]


@pytest.mark.parametrize("family,grid,size,w", [("chain", None, 6, 1), ("grid", (2, 3), 6, 3),
                                                  ("extgrid", (3, 4), 12, 5), ("full", None, 5, 4)])
def test_banded_merge_against_the_dense_merge(family, grid, size, w):
    """Precision, mean, log-density and the KL against p(z_1 | z_2) of the merged posterior, which holds
    its factor on the full band (0, ..., w) of the stencil's largest offset w."""
    model, params, x, eps = _model((family, "diagonal"), (grid, None), sizes=(size, 4))
    fam = model.layers[0].family
    qs, zs = model.infer(params, x, eps)
    q = qs[0]
    q_hat, p = _bottom_up_and_prior(model, params, x, zs)
    assert isinstance(q, BandedParams) and q.offsets == tuple(range(w + 1)) and q.L.shape == (2, 3, w + 1, size)
    P, mean = _dense_merge(fam, q_hat, p)
    np.testing.assert_allclose(fam.precision(q), P, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q.mu, mean, rtol=1e-10, atol=1e-12)
    # log q(z) and KL(q || p) as for any Gaussian with that precision and mean
    z = zs[0]
    diff = z - mean
    sign, logdet = np.linalg.slogdet(P)
    dense_log_q = -0.5 * np.einsum("...i,...ij,...j->...", diff, P, diff) + 0.5 * logdet - 0.5 * size * np.log(2 * np.pi)
    np.testing.assert_allclose(fam.log_prob(q, z), dense_log_q, rtol=1e-10)
    cov = np.linalg.inv(P)
    s2 = p.sigma ** 2
    dense_kl = 0.5 * (np.sum((np.diagonal(cov, axis1=-2, axis2=-1) + (mean - p.mu) ** 2) / s2, -1) - size
                      + np.sum(np.log(s2), -1) + logdet)
    np.testing.assert_allclose(fam.kl_diagonal(q, p), dense_kl, rtol=1e-10)
    # a picture of the merged factor shows its full band
    offsets, values, free = fam.factor_diagonals(fam.merge(q_hat, model.prior(params, 0, zs[1][0])))
    assert offsets == tuple(range(w + 1)) and values.shape == (3, w + 1, size) and free.sum() == sum(size - o for o in offsets)


MERGEABLE = [(("diagonal", "diagonal"), (None, None)), (("chain", "grid"), (None, (2, 2))),
             (("extgrid", "diagonal"), ((2, 3), None)), (("grid", "ar1"), ((2, 3), None)), (("full", "rank1"), (None, None))]


@given(seed=st.integers(0, 2**32 - 1), case=st.sampled_from(MERGEABLE), kl=st.sampled_from(["analytic", "mc"]),
       samples=st.integers(1, 3))
def test_merged_elbo_gradient(seed, case, kl, samples):
    families, grids = case
    model, params, x, eps = _model(families, grids, seed=seed % 1000, samples=samples)
    check_vjp(lambda p: elbo(model, p, x, eps, kl), [params], seed=seed, rtol=1e-4, atol=1e-7)


@given(seed=st.integers(0, 2**32 - 1), case=st.sampled_from(MERGEABLE), k=st.integers(1, 4))
def test_merged_iwae_bound_gradient(seed, case, k):
    families, grids = case
    model, params, x, eps = _model(families, grids, seed=seed % 1000, samples=k)
    check_vjp(lambda p: iwae_bound(model, p, x, eps), [params], seed=seed, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kwargs,message", [
    (dict(posterior="diagonal", merge="precision"), "merge 'precision' merges .* got inference 'bottom-up'"),
    (dict(posterior="diagonal", merge="average", inference="top-down"), "unknown merge 'average'"),
    (dict(posterior=["ar1", "diagonal"], merge="precision", inference="top-down"), "layer 1 .ar1.: the ar1 posterior has no precision merge"),
    (dict(posterior=["rank1", "chain"], merge="precision", inference="top-down"), "layer 1 .rank1.: the rank1 posterior has no"),
])
def test_bad_merges_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE(5, [6, 4], [7], **kwargs)


def test_the_configuration_checks_the_merge():
    for kwargs, message in ((dict(latent=(6, 4), merge="precision"), "merge 'precision' needs inference 'top-down'"),
                            (dict(latent=(6, 4), posterior=("rank1", "chain"), merge="precision", inference="top-down"),
                             "layer 1 .rank1.: merge 'precision' needs a family with a precision merge"),
                            (dict(merge="sum"), "merge must be one of")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**kwargs)
    # the top layer is never merged (its prior is N(0, I)): any family there
    assert TrainConfig(latent=(6, 4), posterior=("chain", "ar1"), merge="precision", inference="top-down").merge == "precision"
    assert TrainConfig().merge == "learned"


def test_a_precision_merged_run_trains_evaluates_and_loads(tmp_path, data_file):
    out = tmp_path / "ladder"
    assert main(["train", "--data", str(data_file), "--limit", "40", "--epochs", "1", "--latent", "6", "4",
                 "--hidden", "8", "--posterior", "grid", "diagonal", "--grid-shape", "2", "3", "--inference", "top-down",
                 "--merge", "precision", "--batch-size", "20", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["merge"] == "precision"
    assert np.isfinite(json.loads((out / "summary.json").read_text())["test_elbo"])
    model, _, config = gvae.training.load_model(out)
    assert config.merge == "precision" and model.merge == "precision"
    assert not any(name.endswith("Wz") for name in model.param_shapes())
    assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", "5", "--limit", "6", "--quiet"]) == 0
    q = gvae.load(out).encode(np.load(data_file)["test_x"][:4])
    assert isinstance(q, BandedParams) and q.offsets == (0, 1, 2, 3) and q.mu.shape == (4, 6)
