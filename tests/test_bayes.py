"""Full variational Bayes over the decoder's weights (--task fullvb): the weights' KL against the normal
distributions' entropies and cross-entropies (scipy), the loss's gradient against finite differences, the
exact check (a linear Gaussian decoder with fixed codes, whose mean-field optimum is Bayesian linear
regression's posterior mean and inverse diagonal precision, where the estimated gradient vanishes), the
initialisation, a run from the command line that resumes to the same numbers, and the refusals."""
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st

from gvae import ops, value_and_grad
from gvae.model import VAE
from gvae.model.bayes import (FLOOR, INIT_SIGMA, SCALE_PREFIX, BayesianDecoderVAE, bayes_loss, sampled_weights,
                              weight_kl, weight_scales)
from gvae.model.gaussian import positive_inverse
from gvae.training import TrainConfig
from tests.gradcheck import check_vjp
from tests.helpers import assert_eval_refuses, trained_straight_and_resumed


def _tiny(seed=0, n=5, n_in=6, latent=2, hidden=(4,), prior_scale=0.7, posterior="diagonal"):
    rng = np.random.default_rng(seed)
    model = BayesianDecoderVAE(n_in, latent, hidden, "elu", posterior, "bernoulli", np.float64,
                               prior_scale=prior_scale)
    params = dict(model.new_params(rng).views)
    for name in model.weight_shapes:  # scales of several sizes, not all at the start's
        params[SCALE_PREFIX + name] = rng.uniform(-3, 1, params[name].shape)
    x = (rng.random((n, n_in)) < 0.4).astype(np.float64)
    return model, params, x, rng.standard_normal((2, n, latent)), rng.standard_normal(model.weight_count)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 16), scale=st.floats(0.1, 3.0))
def test_the_weights_kl_is_the_cross_entropy_minus_the_entropy_of_each_weight(seed, scale):
    model, params, _, _, _ = _tiny(seed, prior_scale=scale)
    expected = 0.0
    for name, sigma in weight_scales(model, params).items():
        mu = params[name]
        entropy = scipy.stats.norm(mu, sigma).entropy()
        cross = 0.5 * np.log(2 * np.pi * scale ** 2) + (sigma ** 2 + mu ** 2) / (2 * scale ** 2)
        expected += float((cross - entropy).sum())
    assert float(weight_kl(model, params)) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(weight_scales(model, params)["dec.W0"],
                               np.logaddexp(0, params[SCALE_PREFIX + "dec.W0"]) + FLOOR, rtol=1e-13)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 16), size=st.sampled_from([1, 50, 10_000]),
       posterior=st.sampled_from(["diagonal", "chain"]))
def test_the_loss_gradient_matches_finite_differences(seed, size, posterior):
    """The weights are drawn by reparameterisation with fixed noise: the loss is smooth in every parameter
    (means, raw scales, encoder), float64."""
    model, params, x, eps, eps_w = _tiny(seed, posterior=posterior)
    check_vjp(lambda p: bayes_loss(p, model, x, eps, eps_w, "analytic", 0.9, size)[0], [params])


def test_the_drawn_weights_are_the_means_plus_the_scales_times_the_noise_in_the_layout_order():
    model, params, _, _, eps_w = _tiny()
    drawn = sampled_weights(model, params, eps_w)
    start = 0
    for name, sigma in weight_scales(model, params).items():
        n = params[name].size
        np.testing.assert_allclose(drawn[name], params[name] + sigma * eps_w[start:start + n].reshape(params[name].shape))
        start += n
    assert start == model.weight_count == sum(params[n].size for n in model.weight_shapes)
    assert all(drawn[k] is params[k] for k in params if k not in model.weight_shapes)


def test_the_mean_field_optimum_of_a_linear_gaussian_decoder_is_bayesian_linear_regressions():
    """Fixed codes z (N, d) and a linear decoder x = z W + b + noise of variance v, the prior N(0, s^2): each
    output's weights (W[:, j], b_j) have the posterior of Bayesian linear regression, precision
    Lambda = Phi^T Phi / v + I / s^2 with Phi = [z, 1], mean Lambda^-1 Phi^T x_j / v. The best diagonal
    Gaussian has that mean and variances 1 / diag(Lambda): there the bound's estimated gradient (the
    reparameterised draws through gvae's weights' KL, averaged over many draws) vanishes within its
    standard error, and a step away it does not."""
    rng = np.random.default_rng(4)
    n, d, n_out, v, s = 6, 2, 3, 2.0, 0.6  # few noisy points: the prior weighs as much as the data
    model = BayesianDecoderVAE(n_out, d, (), "elu", "diagonal", "bernoulli", np.float64, prior_scale=s)
    assert dict(model.weight_shapes) == {"dec.W0": (d, n_out), "dec.b0": (n_out,)}
    z = rng.standard_normal((n, d))
    x = z @ rng.standard_normal((d, n_out)) + 0.5 + np.sqrt(v) * rng.standard_normal((n, n_out))
    phi = np.hstack([z, np.ones((n, 1))])
    precision = phi.T @ phi / v + np.eye(d + 1) / s ** 2
    mean = np.linalg.solve(precision, phi.T @ x / v)                     # (d + 1, n_out)
    sd = np.broadcast_to(1 / np.sqrt(np.diag(precision))[:, None], mean.shape)

    def bound(p, eps_w):
        w = sampled_weights(model, p, eps_w)
        resid = x - (ops.matmul(z, w["dec.W0"]) + w["dec.b0"])
        return ops.sum(resid * resid) * (-0.5 / v) - weight_kl(model, p)

    def mean_gradient(mu, sigma, draws=3000):
        p = {"dec.W0": mu[:d], "dec.b0": mu[d], SCALE_PREFIX + "dec.W0": np.vectorize(positive_inverse)(sigma[:d], FLOOR),
             SCALE_PREFIX + "dec.b0": np.vectorize(positive_inverse)(sigma[d], FLOOR)}
        grads = []
        for _ in range(draws):
            g = value_and_grad(bound)(p, rng.standard_normal(model.weight_count))[1]
            grads.append(np.concatenate([g[k].ravel() for k in sorted(g)]))
        grads = np.array(grads)
        return grads.mean(0), grads.std(0) / np.sqrt(draws)
    g, se = mean_gradient(mean, sd)
    assert np.all(np.abs(g) < 5 * se + 1e-9), (g, se)
    g_off, se_off = mean_gradient(mean + 0.2, 1.5 * sd)
    assert np.abs(g_off).max() > 20 * se_off.max()


def test_the_vae_inside_is_initialised_as_a_plain_vae_and_the_scales_start_small():
    model = BayesianDecoderVAE(12, 3, (8,), "elu", "chain", "bernoulli", np.float32)
    plain = VAE(12, 3, (8,), "elu", "chain", "bernoulli", np.float32)
    x = np.random.default_rng(0).random((20, 12))
    ours, theirs = model.new_params(np.random.default_rng(5), x).views, plain.new_params(np.random.default_rng(5), x).views
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)
    assert set(ours) - set(theirs) == {SCALE_PREFIX + k for k in model.weight_shapes}
    for name in model.weight_shapes:
        np.testing.assert_allclose(weight_scales(model, ours)[name], INIT_SIGMA, rtol=1e-5)
    with pytest.raises(ValueError, match="one stochastic layer"):
        BayesianDecoderVAE(12, (3, 2), (8,))
    with pytest.raises(ValueError, match="prior scale must be a finite number > 0"):
        BayesianDecoderVAE(12, 3, (8,), prior_scale=0.0)


def test_a_fullvb_run_from_the_command_line_resumes_to_the_same_numbers(tmp_path, capsys):
    rows, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "fullvb", "--weight-prior-scale", "0.5", "--latent", "4", "--hidden", "16",
                   "--batch-size", "40"])
    assert all(r["train_weight_kl"] > 0 for r in rows)
    assert all(r["train_bound"] == pytest.approx(r["train_elbo"] - r["train_weight_kl"]) for r in rows)
    assert meta["config"]["weight_prior_scale"] == 0.5 and "vb.dec.W0" in meta["param_shapes"]
    assert summary["task"] == "fullvb" and summary["weight_kl_per_image"] == pytest.approx(summary["weight_kl"] / 120)
    assert np.isfinite(summary["test_elbo_sampled"]) and summary["test_elbo_sampled"] != summary["test_elbo"]
    assert_eval_refuses(tmp_path / "straight", data, capsys, "Bayesian decoder (--task fullvb)")


@pytest.mark.parametrize("settings,message", [
    (dict(latent=(4, 2)), "one stochastic layer"),
    (dict(iw_samples=5), "without --iw-samples"),
    (dict(weight_prior_scale=0.0), "weight_prior_scale must be a finite number > 0"),
])
def test_a_fullvb_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"task": "fullvb", **settings})


def test_the_weights_prior_belongs_to_fullvb_only():
    with pytest.raises(ValueError, match="weight_prior_scale applies to --task fullvb only"):
        TrainConfig(weight_prior_scale=2.0)
