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
from gvae.cli import main
from gvae.model import VAE
from gvae.models.bayes.model import (FLOOR, INIT_SIGMA, LINK_PREFIX, SCALE_PREFIX, BayesianDecoderVAE, band_factors,
                              bayes_loss, sampled_weights, weight_kl, weight_scales)
from gvae.model.posteriors.banded import dense_factor
from gvae.model.gaussian import positive_inverse
from gvae.training import TrainConfig
from tests.gradcheck import check_vjp
from tests.helpers import assert_eval_refuses, trained_straight_and_resumed


def _tiny(seed=0, n=5, n_in=6, latent=2, hidden=(4,), prior_scale=0.7, posterior="diagonal", weights="diagonal"):
    rng = np.random.default_rng(seed)
    model = BayesianDecoderVAE(n_in, latent, hidden, "elu", posterior, "bernoulli", np.float64,
                               prior_scale=prior_scale, weight_posterior=weights)
    params = dict(model.new_params(rng).views)
    for name in model.weight_shapes:  # scales of several sizes, not all at the start's
        params[SCALE_PREFIX + name] = rng.uniform(-3, 1, params[name].shape)
    for name in model.bands:  # links of either sign, not the start's zeros
        params[LINK_PREFIX + name] = rng.uniform(-0.8, 0.8, params[LINK_PREFIX + name].shape)
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


def _linear_gaussian_bound(model, z, x, v):
    """The bound of the linear Gaussian decoder x = z W + b + noise of variance v at fixed codes z, as a
    function of the parameters and the weights' noise: the draw's log-likelihood (less its constant) minus
    the weights' KL."""
    def bound(p, eps_w):
        w = sampled_weights(model, p, eps_w)
        resid = x - (ops.matmul(z, w["dec.W0"]) + w["dec.b0"])
        return ops.sum(resid * resid) * (-0.5 / v) - weight_kl(model, p)
    return bound


def _mean_gradient(bound, p, count, draws, rng):
    """The mean over ``draws`` draws of the weights' noise (``count`` numbers from ``rng``) of the gradient
    of ``bound`` at the parameters ``p``, flattened in the order of the sorted names, and its standard error."""
    grads = []
    for _ in range(draws):
        g = value_and_grad(bound)(p, rng.standard_normal(count))[1]
        grads.append(np.concatenate([g[k].ravel() for k in sorted(g)]))
    grads = np.array(grads)
    return grads.mean(0), grads.std(0) / np.sqrt(draws)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2 ** 16), size=st.sampled_from([1, 50, 10_000]),
       posterior=st.sampled_from(["diagonal", "chain"]), weights=st.sampled_from(["diagonal", "chain", "grid"]))
def test_the_loss_gradient_matches_finite_differences(seed, size, posterior, weights):
    """The weights are drawn by reparameterisation with fixed noise: the loss is smooth in every parameter
    (means, raw scales, links, encoder), float64."""
    model, params, x, eps, eps_w = _tiny(seed, posterior=posterior, weights=weights, latent=4, hidden=(4,))
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


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 16), weights=st.sampled_from(["chain", "grid", "extgrid"]),
       scale=st.floats(0.2, 3.0))
def test_a_banded_weight_posterior_draws_and_kl_are_the_dense_gaussians(seed, weights, scale):
    """Each output unit's incoming weights: precision L L^T with L = S^-1 M built densely from the scales and
    links; a draw is mu + L^-T eps (eps the slice read as (fan_out, fan_in)), the KL the dense Gaussians'
    against N(0, s^2 I); the biases as the diagonal posterior's."""
    model, params, _, _, eps_w = _tiny(seed, n_in=6, latent=6, hidden=(6,), prior_scale=scale, weights=weights)
    assert set(model.bands) == {"dec.W0", "dec.W1"}
    drawn, factors = sampled_weights(model, params, eps_w), band_factors(model, params)
    scales = weight_scales(model, params)
    start, expected_kl = 0, 0.0
    for name, shape in model.weight_shapes.items():
        n = int(np.prod(shape))
        mu = params[name]
        if name in model.bands:
            fan_in, fan_out = shape
            noise = eps_w[start:start + n].reshape(fan_out, fan_in)
            for j in range(fan_out):
                L = dense_factor(factors[name][j], model.bands[name][0])
                np.testing.assert_allclose(np.diag(L), 1 / scales[name][:, j], rtol=1e-12)
                offsets, mask = model.bands[name][0], model.bands[name][1].host
                for k, o in enumerate(offsets[1:]):  # L = S^-1 M: row i's links over sigma_i, masked
                    i = np.arange(o, fan_in)
                    want = params[LINK_PREFIX + name][j, k, i] * mask[k, i] / scales[name][i, j]
                    np.testing.assert_allclose(L[i, i - o], want, rtol=1e-12)
                np.testing.assert_allclose(drawn[name][:, j], mu[:, j] + np.linalg.solve(L.T, noise[j]), rtol=1e-10,
                                           atol=1e-12)
                cov = np.linalg.inv(L @ L.T)
                expected_kl += 0.5 * (np.trace(cov) / scale ** 2 + mu[:, j] @ mu[:, j] / scale ** 2 - fan_in
                                      + fan_in * np.log(scale ** 2) - np.linalg.slogdet(cov)[1])
        else:
            sigma = scales[name]
            np.testing.assert_allclose(drawn[name], mu + sigma * eps_w[start:start + n].reshape(shape), rtol=1e-12)
            expected_kl += float((np.log(scale / sigma) + (sigma ** 2 + mu ** 2) / (2 * scale ** 2) - 0.5).sum())
        start += n
    assert float(weight_kl(model, params)) == pytest.approx(expected_kl, rel=1e-10)


def test_a_banded_weight_posterior_starts_as_the_diagonal_one():
    """Links at zero (the start): the banded draws and KL are the diagonal posterior's, the noise read per unit."""
    model, params, _, _, eps_w = _tiny(3, weights="chain", latent=3, hidden=(5,))
    diagonal = BayesianDecoderVAE(6, 3, (5,), "elu", "diagonal", "bernoulli", np.float64, prior_scale=0.7)
    fresh = dict(model.new_params(np.random.default_rng(0)).views)
    assert all(np.all(fresh[LINK_PREFIX + name] == 0) for name in model.bands)
    for name in model.bands:
        params[LINK_PREFIX + name] = np.zeros_like(params[LINK_PREFIX + name])
    plain = {k: v for k, v in params.items() if not k.startswith(LINK_PREFIX)}
    assert float(weight_kl(model, params)) == pytest.approx(float(weight_kl(diagonal, plain)), rel=1e-12)
    drawn, start = sampled_weights(model, params, eps_w), 0
    for name, shape in model.weight_shapes.items():
        n = int(np.prod(shape))
        noise = eps_w[start:start + n].reshape(shape[::-1]).T if name in model.bands else eps_w[start:start + n].reshape(shape)
        np.testing.assert_allclose(drawn[name], params[name] + weight_scales(model, params)[name] * noise, rtol=1e-12)
        start += n


def test_a_chain_weight_posterior_over_two_inputs_reaches_bayesian_linear_regressions_full_posterior():
    """Two centred codes and a linear Gaussian decoder: each output's weights W[:, j] have the posterior of
    Bayesian linear regression, precision Lambda = z^T z / v + I / s^2 (the bias apart: the codes are
    centred), a full 2 x 2 matrix that a chain over 2 inputs holds exactly. At its Cholesky factor, written
    as S^-1 M, and the regression's means, the bound's estimated gradient vanishes within its standard
    error for every parameter, links included; with the links at zero (the mean-field start) it does not."""
    rng = np.random.default_rng(6)
    n, d, n_out, v, s = 7, 2, 3, 1.5, 0.8
    model = BayesianDecoderVAE(n_out, d, (), "elu", "diagonal", "bernoulli", np.float64, prior_scale=s,
                               weight_posterior="chain")
    z = rng.standard_normal((n, d))
    z -= z.mean(0)
    z[:, 1] += 0.8 * z[:, 0]  # correlated codes: a posterior the diagonal cannot hold
    x = z @ rng.standard_normal((d, n_out)) + 0.3 + np.sqrt(v) * rng.standard_normal((n, n_out))
    precision = z.T @ z / v + np.eye(d) / s ** 2
    mean = np.linalg.solve(precision, z.T @ x / v)                          # (d, n_out)
    b_precision = n / v + 1 / s ** 2
    b_mean = x.sum(0) / v / b_precision
    chol = np.linalg.cholesky(precision)                                    # Lambda = C C^T, C lower
    sigma = 1 / np.diag(chol)
    link = chol[1, 0] * sigma[1]                                             # M[1, 0] = C[1, 0] sigma_1

    bound = _linear_gaussian_bound(model, z, x, v)

    def mean_gradient(links, draws=3000):
        inverse = np.vectorize(positive_inverse)
        p = {"dec.W0": mean, "dec.b0": b_mean, SCALE_PREFIX + "dec.W0": inverse(np.tile(sigma[:, None], (1, n_out)), FLOOR),
             SCALE_PREFIX + "dec.b0": np.full(n_out, positive_inverse(1 / np.sqrt(b_precision), FLOOR)),
             LINK_PREFIX + "dec.W0": np.full((n_out, 1, d), links)}
        return _mean_gradient(bound, p, model.weight_count, draws, rng)
    g, se = mean_gradient(link)
    assert np.all(np.abs(g) < 5 * se + 1e-9), (g, se)
    g_off, se_off = mean_gradient(0.0)
    moved = se_off > 0  # the masked link slot (unit 0 has no input before it) has no gradient at all
    assert np.max(np.abs(g_off[moved]) / se_off[moved]) > 20


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

    bound = _linear_gaussian_bound(model, z, x, v)

    def mean_gradient(mu, sigma, draws=3000):
        p = {"dec.W0": mu[:d], "dec.b0": mu[d], SCALE_PREFIX + "dec.W0": np.vectorize(positive_inverse)(sigma[:d], FLOOR),
             SCALE_PREFIX + "dec.b0": np.vectorize(positive_inverse)(sigma[d], FLOOR)}
        return _mean_gradient(bound, p, model.weight_count, draws, rng)
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
                   "--batch-size", "40", "--weight-posterior", "chain"])
    assert all(r["train_weight_kl"] > 0 for r in rows)
    assert all(r["train_bound"] == pytest.approx(r["train_elbo"] - r["train_weight_kl"]) for r in rows)
    assert meta["config"]["weight_prior_scale"] == 0.5 and "vb.dec.W0" in meta["param_shapes"]
    assert meta["config"]["weight_posterior"] == "chain" and meta["param_shapes"]["vb.links.dec.W1"] == [784, 1, 16]
    assert summary["task"] == "fullvb" and summary["weight_kl_per_image"] == pytest.approx(summary["weight_kl"] / 120)
    assert np.isfinite(summary["test_elbo_sampled"]) and summary["test_elbo_sampled"] != summary["test_elbo"]
    assert_eval_refuses(tmp_path / "straight", data, capsys, "Bayesian decoder (--task fullvb)")


@pytest.mark.parametrize("settings,message", [
    (dict(latent=(4, 2)), "one stochastic layer"),
    (dict(iw_samples=5), "without --iw-samples"),
    (dict(weight_prior_scale=0.0), "weight_prior_scale must be a finite number > 0"),
    (dict(weight_posterior="grid", latent=7, hidden=(7,)), "grid posterior over the 7 inputs of dec.W0: latent "
                                                            "dimension 7 has no r x c lattice"),
])
def test_a_fullvb_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.of(**{"task": "fullvb", **settings})


@pytest.mark.parametrize("scale", ["1e308", "1e-308", "1e-200", "3.1e-7", "3.2e6"])
def test_a_prior_scale_beyond_the_dtype_is_one_line_before_any_work(tmp_path, data_file, capsys, scale):
    """s^2 and 1 / s^2 overflowed (an OverflowError or ZeroDivisionError from s ** 2 in a traceback)."""
    out = tmp_path / "run"
    assert main(["train", "--task", "fullvb", "--weight-prior-scale", scale, "--data", str(data_file),
                 "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"weight_prior_scale {float(scale):g} is beyond float32 training: it must lie " \
        "in [3.16e-07, 3.16e+06] with dtype float32" in err and not out.exists()


def test_the_prior_scales_bounds_are_taken_and_follow_the_dtype():
    for scale in (3.17e-7, 3.16e6):
        TrainConfig.of(task="fullvb", weight_prior_scale=scale)
    for scale in (1e-74, 1e74):
        TrainConfig.of(task="fullvb", weight_prior_scale=scale, dtype="float64")
    with pytest.raises(ValueError, match=r"must lie in \[1e-74, 1e\+74\] with dtype float64"):
        TrainConfig.of(task="fullvb", weight_prior_scale=1e-200, dtype="float64")


def test_the_weights_prior_and_posterior_belong_to_fullvb_only():
    with pytest.raises(ValueError, match="weight_prior_scale applies to --task fullvb only"):
        TrainConfig.of(weight_prior_scale=2.0)
    with pytest.raises(ValueError, match="weight_posterior applies to --task fullvb only"):
        TrainConfig.of(weight_posterior="chain")
