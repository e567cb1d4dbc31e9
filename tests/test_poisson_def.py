"""The Poisson DEF (--task poissondef): the counts read from the images, the truncated inverse-CDF draws
against SciPy's Poisson quantiles, the log-weights of a two-layer model against SciPy's densities, the
pathwise gradients of VIMCO's loss against finite differences of the bound, a run that resumes to the same
numbers, and the refusals."""
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st

from gvae import ops, value_and_grad
from gvae.models.binary.model import vimco_loss
from gvae.models.poisson_def.model import (BASE_RATE, PRIOR, RATE_FLOOR, RATE_MAX, PixelCounts, PoissonDEF, log_weights,
                                    poisson_draw)
from gvae.training import TrainConfig
from tests.gradcheck import check_vjp
from tests.helpers import assert_eval_estimates, trained_straight_and_resumed


def test_the_counts_are_the_8_bit_intensities_and_other_data_are_refused():
    k = np.arange(256)
    np.testing.assert_array_equal(PixelCounts.counts((k / 256)[None]), k[None])
    np.testing.assert_array_equal(PixelCounts.counts((k / 255)[None]), k[None])  # scaled uint8 gives the same k
    with pytest.raises(ValueError, match="floats in \\[0, 1\\]"):
        PixelCounts.counts(np.array([[1.5]]))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2 ** 16))
def test_the_draws_are_scipys_poisson_quantiles(seed):
    rng = np.random.default_rng(seed)
    rate = np.exp(rng.uniform(np.log(RATE_FLOOR), np.log(RATE_MAX), (3, 40)))
    u = rng.random((5, 3, 40))
    np.testing.assert_array_equal(poisson_draw(rate, u), scipy.stats.poisson.ppf(u, rate))


def _tiny(seed=0, n_in=5, latent=(3, 2), hidden=(4,)):
    rng = np.random.default_rng(seed)
    model = PoissonDEF(n_in, latent, hidden, "elu", np.float64)
    x = rng.integers(0, 12, (4, n_in)).astype(np.float64)
    params = dict(model.new_params(rng, x).views)
    return model, params, x, rng


def test_the_log_weights_are_the_two_layer_model_in_scipy():
    model, params, x, rng = _tiny(seed=3)
    u = rng.random((3, 4, 5))
    softplus = lambda v: np.logaddexp(0, v)  # noqa: E731
    h = np.asarray(model.encoder(params, x / 256))
    h = softplus(h) + RATE_FLOOR
    r = h - softplus(h - RATE_MAX)
    r1, r2 = r[:, :3], r[:, 3:]
    z1, z2 = scipy.stats.poisson.ppf(u[..., :3], r1), scipy.stats.poisson.ppf(u[..., 3:], r2)
    log_q = scipy.stats.poisson.logpmf(z1, r1).sum(-1) + scipy.stats.poisson.logpmf(z2, r2).sum(-1)
    log_p = scipy.stats.poisson.logpmf(z2, softplus(params[PRIOR])).sum(-1)
    log_p += scipy.stats.poisson.logpmf(z1, z2 @ softplus(params["gen.W1"]) + RATE_FLOOR).sum(-1)
    rec = scipy.stats.poisson.logpmf(x, z1 @ softplus(params["gen.W0"]) + softplus(params[BASE_RATE])).sum(-1)
    got_rec, got_ratio, got_q = log_weights(model, params, x, u)
    np.testing.assert_allclose(got_q, log_q, rtol=1e-10)
    np.testing.assert_allclose(got_ratio, log_p - log_q, rtol=1e-10)
    np.testing.assert_allclose(got_rec, rec, rtol=1e-10)
    assert np.all(r < RATE_MAX)


def test_the_prior_draws_and_the_pictures_are_the_two_layer_model_in_scipy():
    """gvae sample's draws: z_2 ~ Poisson(softplus(a)), z_1 ~ Poisson(z_2 W_1 + floor), the pixels' rates
    z_1 W_0 + c; the picture's means rate / 256 and its pixels' counts by scipy's quantiles (up to 255) / 256."""
    model, params, _, rng = _tiny(seed=6)
    u = rng.random((7, 5))
    softplus = lambda v: np.logaddexp(0, v)  # noqa: E731
    z2 = scipy.stats.poisson.ppf(u[:, 3:], softplus(params[PRIOR]))
    z1 = scipy.stats.poisson.ppf(u[:, :3], z2 @ softplus(params["gen.W1"]) + RATE_FLOOR)
    codes = model.prior_sample(params, u)
    np.testing.assert_array_equal(codes[1], z2)
    np.testing.assert_array_equal(codes[0], z1)
    rate = model.likelihood_params(params, codes)
    np.testing.assert_allclose(rate, z1 @ softplus(params["gen.W0"]) + softplus(params[BASE_RATE]), rtol=1e-12)
    np.testing.assert_allclose(model.likelihood.mean(rate, params), rate / 256, rtol=1e-15)
    big = np.array([[0.5, 40.0, 300.0]])  # a count above 255 stays an 8-bit intensity
    drawn = model.likelihood.sample(big, params, np.random.default_rng(2))
    want = np.minimum(scipy.stats.poisson.ppf(np.random.default_rng(2).random(big.shape), big), 255) / 256
    np.testing.assert_array_equal(drawn, want)


@pytest.mark.parametrize("seed", [0, 1])
def test_vimcos_gradient_in_the_generative_layers_is_the_bounds(seed):
    """The draws fixed, the bound L_K is smooth in the generative weights, the base rates and the prior
    (checked against central differences), and VIMCO's loss has minus its gradient there."""
    model, params, x, rng = _tiny(seed=seed)
    u = rng.random((3, 4, 5))
    part = {k: v for k, v in params.items() if k.startswith("gen.") or k == PRIOR}
    rest = {k: v for k, v in params.items() if k not in part}

    def bound(p):
        rec, log_ratio, _ = log_weights(model, {**rest, **p}, x, u)
        return ops.mean(ops.log_mean_exp(rec + log_ratio, axis=0)[0])
    check_vjp(bound, [part])
    got = value_and_grad(lambda p: vimco_loss({**rest, **p}, model, x, u)[0])(part)[1]
    want = value_and_grad(bound)(part)[1]
    for k in want:
        np.testing.assert_allclose(got[k], -want[k], rtol=1e-10, atol=1e-12)


def test_a_poissondef_run_resumes_to_the_same_numbers_and_gvae_eval_refuses_it(tmp_path, capsys):
    rows, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "poissondef", "--latent", "5", "3", "--hidden", "16", "--iw-samples", "3",
                   "--batch-size", "40"])
    assert summary["task"] == "poissondef" and summary["test_log_px"] >= summary["test_elbo"] - 1.0
    assert meta["param_shapes"]["gen.W1"] == [3, 5] and meta["param_shapes"][BASE_RATE] == [784]
    assert_eval_estimates(tmp_path / "straight", data, capsys, "Poisson DEF (--task poissondef)", samples=True)


@pytest.mark.parametrize("settings,message", [
    (dict(estimator="taylor"), "vimco or nvil, not taylor"),
    (dict(iw_samples=1), "give --iw-samples K with K >= 2"),
])
def test_a_poissondef_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.of(**{"task": "poissondef", **settings})
