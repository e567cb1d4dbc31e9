"""The sparse gamma DEF (--task gammadef): the Bernoulli-Poisson link against scipy's Poisson, the samples'
log-weights against a NumPy/SciPy reference of the two-layer model, the loss's gradient against finite
differences, the initialisation at the data's marginal, a run that resumes to the same numbers, and the
refusals."""
import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, settings, strategies as st

from gvae import ops
from gvae.models.gamma_def.model import (MEAN_FLOOR, PRIOR_RATE, PRIOR_SHAPE, RATE_FLOOR, SCALE_FLOOR, SHAPE_FLOOR, U_FLOOR,
                                  GammaDEF, draw, gamma_def_loss, joint_terms, log_weights, open_uniform, weight_kl,
                                  weight_posterior_names)
from gvae.training import TrainConfig
from tests.gradcheck import check_vjp
from tests.helpers import assert_eval_estimates, trained_straight_and_resumed


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2 ** 16))
def test_the_bernoulli_poisson_link_is_scipys_poisson_at_zero_and_above(seed):
    rng = np.random.default_rng(seed)
    rate = np.exp(rng.uniform(np.log(1e-9), np.log(30.0), (3, 4, 5)))
    x = (rng.random((4, 5)) < 0.5).astype(np.float64)
    p0 = scipy.stats.poisson.logpmf(0, rate)
    want = np.where(x == 1, np.log(-np.expm1(p0)), p0).sum(-1)  # log P(n > 0) = log(1 - P(n = 0))
    np.testing.assert_allclose(ops.bernoulli_poisson_loglik(rate, x), want, rtol=1e-12)
    # tiny rates: log(1 - e^-r) is log r to first order, not the -inf of 1 - exp(-r) rounded
    assert ops.bernoulli_poisson_loglik(np.array([1e-300]), np.ones(1)) == pytest.approx(np.log(1e-300), rel=1e-12)


def _tiny(seed=0, n=4, n_in=6, latent=(3, 2), hidden=(5,)):
    rng = np.random.default_rng(seed)
    model = GammaDEF(n_in, latent, hidden, "elu", np.float64)
    x = (rng.random((n, n_in)) < 0.4).astype(np.float64)
    params = dict(model.new_params(rng, x).views)
    return model, params, x, open_uniform(rng, (2, n, model.noise_size), np.float64)


def _mlp(params, x):
    h = x @ params["enc.W0"] + params["enc.b0"]
    h = np.where(h > 0, h, np.expm1(np.minimum(h, 0)))
    return h @ params["enc.W1"] + params["enc.b1"]


def test_the_log_weights_are_the_dense_two_layer_models():
    """Draws by scipy's inverse regularised incomplete gamma function, densities by scipy.stats.gamma, the
    pixels by the link: z_2 ~ Gamma(0.1, 0.3), z_1 | z_2 ~ Gamma(0.1, 0.1 / (z_2 W_1)), x | z_1 through
    r = z_1 W_0."""
    model, params, x, u = _tiny(seed=3)
    h = _mlp(params, x)
    softplus = lambda v: np.logaddexp(0, v)  # noqa: E731
    zs, log_q = [], 0
    for lo, k in ((0, 3), (6, 2)):
        a, b = softplus(h[:, lo:lo + k]) + SHAPE_FLOOR, softplus(h[:, lo + k:lo + 2 * k]) + SCALE_FLOOR
        off = 0 if lo == 0 else 3
        z = scipy.special.gammaincinv(a, u[..., off:off + k]) / b
        log_q = log_q + scipy.stats.gamma.logpdf(z, a, scale=1 / b).sum(-1)
        zs.append(z)
    w0, w1 = softplus(params["gen.W0"]), softplus(params["gen.W1"])
    log_p = scipy.stats.gamma.logpdf(zs[1], PRIOR_SHAPE, scale=1 / PRIOR_RATE).sum(-1)
    m = zs[1] @ w1 + RATE_FLOOR
    log_p = log_p + scipy.stats.gamma.logpdf(zs[0], PRIOR_SHAPE, scale=m / PRIOR_SHAPE).sum(-1)
    r = zs[0] @ w0 + RATE_FLOOR
    rec = np.where(x == 1, np.log(-np.expm1(-r)), -r).sum(-1)
    got_rec, got_ratio = log_weights(model, params, x, u)
    np.testing.assert_allclose(got_rec, rec, rtol=1e-9)
    np.testing.assert_allclose(got_ratio, log_p - log_q, rtol=1e-8, atol=1e-8)
    loss, (bound, mean_rec, rate) = gamma_def_loss(params, model, x, u, kl_weight=0.5)
    assert loss == pytest.approx(-(rec + 0.5 * (log_p - log_q)).mean(), rel=1e-9)
    assert bound == pytest.approx((rec + log_p - log_q).mean(), rel=1e-9) and rate == pytest.approx(
        -(log_p - log_q).mean(), rel=1e-8)


@pytest.mark.parametrize("latent", [(3,), (3, 2)])
def test_the_loss_gradient_against_finite_differences(latent):
    """Through the implicit reparameterisation of every draw, the gamma densities and the link, float64."""
    model, params, x, u = _tiny(seed=5, latent=latent)
    check_vjp(lambda p_: gamma_def_loss(p_, model, x, u, kl_weight=0.8)[0], [params], rtol=1e-4)


def test_the_pixels_start_at_the_datas_marginal_and_the_uniforms_stay_inside_zero_one():
    rng = np.random.default_rng(2)
    x = (rng.random((400, 30)) < np.linspace(0.05, 0.6, 30)).astype(np.float32)
    model = GammaDEF(30, (8, 4), (10,), dtype=np.float32)
    params = model.new_params(np.random.default_rng(0), x).views
    w0 = np.logaddexp(0, params["gen.W0"].astype(np.float64))
    target = -np.log1p(-np.clip(x.mean(0), 1e-3, 1 - 1e-3)) / (8 * PRIOR_SHAPE / PRIOR_RATE)
    assert np.all(w0 >= 0.5 * target - 1e-6) and np.all(w0 <= 1.5 * target + 1e-6)
    # at the prior's mean z_1 = alpha / beta, the rates' mean is the data's marginal's, within the draws' spread
    p_on = 1 - np.exp(-(PRIOR_SHAPE / PRIOR_RATE) * w0.sum(0))
    assert np.corrcoef(p_on, x.mean(0))[0, 1] > 0.95
    w1 = np.logaddexp(0, params["gen.W1"].astype(np.float64))
    assert np.all((w1 >= 0.5 / 4 - 1e-6) & (w1 <= 1.5 / 4 + 1e-6))

    class Zeros:
        def random(self, shape, dtype):
            return np.zeros(shape, dtype)
    assert np.all(open_uniform(Zeros(), (3,), np.float32) == np.float32(U_FLOOR))


@pytest.mark.parametrize("weights", ["point", "gamma"])
def test_the_prior_draws_are_the_dense_two_layer_models(weights):
    """gvae sample's draws by scipy's inverse regularised incomplete gamma function, top down: z_2 ~ Gamma(0.1,
    0.3), z_1 | z_2 ~ Gamma(0.1, 0.1 / (z_2 W_1)) (gamma weights at their posterior mean), and the pixels'
    logits log(e^r - 1), whose sigmoid is the link's 1 - exp(-r), r = z_1 W_0."""
    model, params, _, rng = (_tiny_gamma_weights(seed=4) if weights == "gamma"
                             else (*_tiny(seed=4)[:3], np.random.default_rng(4)))
    u = open_uniform(rng, (5, model.noise_size), np.float64)
    softplus = lambda v: np.logaddexp(0, v)  # noqa: E731
    if weights == "gamma":
        w0, w1 = (softplus(params[weight_posterior_names(l)[0]]) + MEAN_FLOOR for l in (0, 1))
    else:
        w0, w1 = softplus(params["gen.W0"]), softplus(params["gen.W1"])
    z2 = scipy.special.gammaincinv(PRIOR_SHAPE, u[:, 3:]) / PRIOR_RATE
    z1 = scipy.special.gammaincinv(PRIOR_SHAPE, u[:, :3]) / (PRIOR_SHAPE / (z2 @ w1 + RATE_FLOOR))
    codes = model.prior_sample(params, u)
    np.testing.assert_allclose(codes[1], z2, rtol=1e-9)
    np.testing.assert_allclose(codes[0], z1, rtol=1e-8)
    r = z1 @ w0 + RATE_FLOOR
    logits = model.likelihood_params(params, codes)
    np.testing.assert_allclose(logits, np.log(np.expm1(r)), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(model.likelihood.mean(logits, params), -np.expm1(-r), rtol=1e-7)


def test_a_gammadef_run_resumes_to_the_same_numbers_and_gvae_eval_refuses_it(tmp_path, capsys):
    rows, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "gammadef", "--latent", "4", "3", "--hidden", "16", "--batch-size", "40",
                   "--samples", "2", "--warmup", "2"])
    assert summary["task"] == "gammadef" and np.isfinite(summary["test_log_px"]) and summary["log_px_samples"] == 100
    assert summary["test_log_px"] >= summary["test_elbo"] - 1.0  # L_1000 above the one-draw ELBO, within its noise
    assert meta["param_shapes"]["gen.W1"] == [3, 4] and meta["param_shapes"]["gen.W0"] == [4, 784]
    assert rows[0]["kl_weight"] < 1
    assert_eval_estimates(tmp_path / "straight", data, capsys, "sparse gamma DEF (--task gammadef)", samples=True)


@pytest.mark.parametrize("settings,message", [
    (dict(iw_samples=5), "without --iw-samples"),
    (dict(posterior="chain"), "leave --posterior at the default"),
    (dict(likelihood="gaussian"), "leave --likelihood at the default"),
    (dict(kl="mc"), "leave --kl at the default"),
])
def test_a_gammadef_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.of(**{"task": "gammadef", **settings})


def test_the_score_function_and_the_implicit_gradient_estimate_one_gradient_the_first_far_noisier():
    """Over 3,000 draws on a tiny model (float64), the mean gradients of the two estimators agree within 5
    standard errors in every parameter, and the score function's variance in the encoder is the larger."""
    from gvae import value_and_grad
    from gvae.models.gamma_def.model import score_function_loss
    model, params, x, _ = _tiny(seed=8, latent=(2,), hidden=(3,))
    rng = np.random.default_rng(9)
    names = sorted(params)
    draws = {"implicit": [], "score": []}
    for _ in range(3000):
        u = open_uniform(rng, (1, len(x), model.noise_size), np.float64)
        for name, loss in (("implicit", gamma_def_loss), ("score", score_function_loss)):
            g = value_and_grad(lambda p_: loss(p_, model, x, u)[0])(params)[1]
            draws[name].append(np.concatenate([np.ravel(g[n]) for n in names]))
    implicit, score = (np.array(draws[k]) for k in ("implicit", "score"))
    se = np.sqrt(implicit.var(0) / len(implicit) + score.var(0) / len(score))
    assert np.all(np.abs(implicit.mean(0) - score.mean(0)) < 5 * se + 1e-12)
    encoder = np.concatenate([np.full(np.size(params[n]), n.startswith("enc.")) for n in names])
    assert score[:, encoder].var(0).sum() > 5 * implicit[:, encoder].var(0).sum()


def _tiny_gamma_weights(seed=0, n=4, n_in=6, latent=(3, 2), hidden=(5,)):
    rng = np.random.default_rng(seed)
    model = GammaDEF(n_in, latent, hidden, "elu", np.float64, weights="gamma")
    x = (rng.random((n, n_in)) < 0.4).astype(np.float64)
    params = dict(model.new_params(rng, x).views)
    for m, a in map(weight_posterior_names, range(len(latent))):  # away from the initial, nearly sure weights
        params[m] = params[m] + rng.uniform(-0.5, 0.5, params[m].shape)
        params[a] = rng.uniform(-1.0, 2.0, params[a].shape)
    return model, params, x, rng


def test_gamma_weights_the_loss_is_the_bound_at_a_draw_of_the_weights_less_their_kl_over_n():
    """The weights drawn by scipy's inverse incomplete gamma function from q(W) = Gamma(softplus + floors), the
    log-weights at them, and log q(W) - log p(W) by scipy.stats over the data size."""
    model, params, x, rng = _tiny_gamma_weights(seed=3)
    u = open_uniform(rng, (2, len(x), model.noise_size), np.float64)
    u_w = open_uniform(rng, (model.weight_noise_size,), np.float64)
    softplus = lambda v: np.logaddexp(0, v)  # noqa: E731
    weights, kl, lo = [], 0.0, 0
    for layer, (k, out) in enumerate(model.weight_shapes):
        m_name, a_name = weight_posterior_names(layer)
        a = np.exp(params[a_name]) + SHAPE_FLOOR
        b = a / (softplus(params[m_name]) + MEAN_FLOOR)
        w = scipy.special.gammaincinv(a, u_w[lo:lo + k * out].reshape(k, out)) / b
        kl += (scipy.stats.gamma.logpdf(w, a, scale=1 / b) - scipy.stats.gamma.logpdf(w, PRIOR_SHAPE,
                                                                                        scale=1 / PRIOR_RATE)).sum()
        weights.append(w)
        lo += k * out
    rec, log_ratio = joint_terms(model, params, x, *draw(model, params, x, u), weights=weights)[:2]
    loss, (bound, _, _, per_image) = gamma_def_loss(params, model, x, u, 0.5, u_w, data_size=250)
    assert per_image == pytest.approx(kl / 250, rel=1e-8)
    assert loss == pytest.approx(-(rec + 0.5 * log_ratio).mean() + kl / 250, rel=1e-8)
    assert bound == pytest.approx((rec + log_ratio).mean() - kl / 250, rel=1e-8)
    # validation's weights are q's means
    for w, (a, b) in zip(model.weights(params), model.weight_posterior(params)):
        np.testing.assert_allclose(w, a / b, rtol=1e-12)


def test_gamma_weights_kl_estimate_and_its_gradient_are_unbiased_for_the_closed_form():
    """Over 4,000 draws of W, the mean of log q(W) - log p(W) is the closed form of :func:`weight_kl` within 5
    standard errors, and so is the mean of its implicit-reparameterisation gradient in the raw means and
    shapes the closed form's central differences."""
    from gvae import value_and_grad
    model, params, _, rng = _tiny_gamma_weights(seed=4, n_in=3, latent=(2,))
    names = list(weight_posterior_names(0))
    exact = weight_kl(model, params)
    draws = 4000
    values, grads = [], []
    for _ in range(draws):
        u_w = open_uniform(rng, (model.weight_noise_size,), np.float64)
        value, g = value_and_grad(lambda p: model.sampled_weights(p, u_w)[1])(params)
        values.append(float(value))
        grads.append(np.concatenate([g[n].ravel() for n in names]))
    values, grads = np.array(values), np.array(grads)
    assert abs(values.mean() - exact) < 5 * values.std() / np.sqrt(draws)
    h, want = 1e-6, []
    for n in names:
        for j in range(params[n].size):
            up, down = params[n].copy(), params[n].copy()
            up.flat[j] += h
            down.flat[j] -= h
            want.append((weight_kl(model, {**params, n: up}) - weight_kl(model, {**params, n: down})) / (2 * h))
    se = grads.std(0) / np.sqrt(draws)
    assert np.all(np.abs(grads.mean(0) - np.array(want)) < 5 * se + 1e-9)
    assert np.abs(want).max() > 10 * se.max()


def test_gamma_weights_loss_gradient_against_finite_differences():
    """Through the weights' implicit reparameterisation and their KL's estimate too, float64."""
    model, params, x, rng = _tiny_gamma_weights(seed=6)
    u = open_uniform(rng, (2, len(x), model.noise_size), np.float64)
    u_w = open_uniform(rng, (model.weight_noise_size,), np.float64)
    check_vjp(lambda p_: gamma_def_loss(p_, model, x, u, 0.8, u_w, 300)[0], [params], rtol=1e-4)


def test_a_gamma_weights_run_resumes_to_the_same_numbers(tmp_path):
    rows, summary, meta, _ = trained_straight_and_resumed(
        tmp_path, ["--task", "gammadef", "--def-weights", "gamma", "--latent", "4", "3", "--hidden", "16",
                   "--batch-size", "40"])
    assert meta["param_shapes"]["vb.gen.m0"] == [4, 784] and meta["param_shapes"]["vb.gen.a0"] == [4, 784]
    assert "gen.W0" not in meta["param_shapes"]
    assert all(r["train_weight_kl"] > 0 for r in rows)
    assert summary["weight_kl"] > 0 and summary["weight_kl_per_image"] == pytest.approx(summary["weight_kl"] / 120)
    assert np.isfinite(summary["test_elbo"]) and np.isfinite(summary["test_log_px"])


def test_gamma_weights_are_refused_elsewhere_and_unknown_kinds_are_named():
    with pytest.raises(ValueError, match="def.weights"):
        TrainConfig.of(task="generate", def_weights="gamma")
    with pytest.raises(ValueError, match="weights are one of"):
        GammaDEF(5, (3,), (4,), weights="normal")
