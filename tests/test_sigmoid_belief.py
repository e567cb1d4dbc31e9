"""The sigmoid belief network DEF (--task sbndef): the log-weights of a two-layer model against NumPy, VIMCO's
gradient estimate unbiased for the enumerated expectation of the bound in every kind of parameter, a run
that resumes to the same numbers, and the refusals."""
import itertools

import numpy as np
import pytest

from gvae.models.binary.model import SIGNALS, score_loss
from gvae.models.sigmoid_belief.model import PRIOR, SigmoidBeliefDEF, log_weights
from gvae.training import TrainConfig
from tests.helpers import assert_eval_estimates, trained_straight_and_resumed
from tests.test_binary import _bern, _central_differences, _elu, assert_unbiased


def _tiny(seed=0, n_in=3, latent=(2, 1), hidden=(4,)):
    rng = np.random.default_rng(seed)
    model = SigmoidBeliefDEF(n_in, latent, hidden, "elu", np.float64)
    params = dict(model.new_params(rng).views)
    params[PRIOR] = rng.normal(0, 0.5, latent[-1])
    return model, params, rng


def test_the_log_weights_are_the_two_layer_model_written_out_in_numpy():
    model, params, rng = _tiny(n_in=5, latent=(3, 2))
    x = (rng.random((4, 5)) < 0.5).astype(float)
    u = rng.random((3, 4, 5))
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    l1 = _elu(x @ params["enc.W0"] + params["enc.b0"]) @ params["enc.W1"] + params["enc.b1"]
    z1 = (u[..., :3] < sig(l1)).astype(float)
    l2 = z1 @ params["up1.W0"] + params["up1.b0"]
    z2 = (u[..., 3:] < sig(l2)).astype(float)
    log_q = _bern(l1, z1) + _bern(l2, z2)
    log_p = _bern(params[PRIOR], z2) + _bern(z2 @ params["gen1.W0"] + params["gen1.b0"], z1)
    rec = _bern(z1 @ params["gen0.W0"] + params["gen0.b0"], x)
    got_rec, got_ratio, got_q = log_weights(model, params, x, u)
    np.testing.assert_allclose(got_q, log_q, rtol=1e-12)
    np.testing.assert_allclose(got_ratio, log_p - log_q, rtol=1e-12)
    np.testing.assert_allclose(got_rec, rec, rtol=1e-12)


def test_the_prior_draws_are_the_two_layer_model_written_out_in_numpy():
    """gvae sample's draws: z_2 = [u_2 < sigmoid(a)], z_1 = [u_1 < sigmoid(z_2 W_1 + b_1)], the pixels' logits
    z_1 W_0 + b_0."""
    model, params, rng = _tiny(seed=2, n_in=5, latent=(3, 2))
    u = rng.random((6, 5))
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    z2 = (u[:, 3:] < sig(params[PRIOR])).astype(float)
    z1 = (u[:, :3] < sig(z2 @ params["gen1.W0"] + params["gen1.b0"])).astype(float)
    codes = model.prior_sample(params, u)
    np.testing.assert_array_equal(codes[0], z1)
    np.testing.assert_array_equal(codes[1], z2)
    np.testing.assert_allclose(model.likelihood_params(params, codes), z1 @ params["gen0.W0"] + params["gen0.b0"],
                               rtol=1e-12)


def test_the_pixels_bias_starts_at_the_datas_marginal_and_the_prior_at_one_half():
    x = (np.random.default_rng(1).random((200, 4)) < [0.1, 0.3, 0.5, 0.9]).astype(np.float32)
    model = SigmoidBeliefDEF(4, (3, 2), (5,))
    params = model.new_params(np.random.default_rng(0), x).views
    np.testing.assert_allclose(params["gen0.b0"], model.likelihood.output_bias(x))
    assert np.all(params[PRIOR] == 0)


def test_vimcos_estimate_is_unbiased_for_the_enumerated_expectation_of_the_bound():
    """E over K = 2 samples of L_K, summed over the 16 pairs of codes of two one-unit layers, has
    central-difference gradients that the mean of 12,000 VIMCO estimates matches within 5 standard errors:
    in the encoder and the upward layer (score function), the generative layers and the prior (pathwise)."""
    model, params, rng = _tiny(seed=4, latent=(1, 1))
    x = np.array([[1.0, 0.0, 1.0]])
    names = ["enc.b1", "up1.W0", "up1.b0", "gen0.b0", "gen1.W0", PRIOR]
    codes = [np.array(c, float) for c in itertools.product([0, 1], repeat=2)]

    def expected_bound(p):
        total = 0.0
        for c1, c2 in itertools.product(codes, repeat=2):
            zs = np.stack([c1, c2])[:, None, :]                  # (K, B, units of both layers)
            u = np.where(zs > 0, 0.0, 1 - 1e-12)                 # z = [u < sigmoid]: the code itself
            rec, log_ratio, log_q = log_weights(model, p, x, u)
            total += np.exp(log_q.sum()) * np.log(np.exp(rec + log_ratio).mean(0))[0]
        return total
    assert_unbiased(lambda p, u: score_loss(p, model, np.repeat(x, u.shape[1], 0), u, SIGNALS["vimco"])[0], params,
                    names, _central_differences(expected_bound, params, names), (2, 2), 12_000, rng)


def test_an_sbndef_run_resumes_to_the_same_numbers_and_gvae_eval_refuses_it(tmp_path, capsys):
    rows, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "sbndef", "--latent", "6", "3", "--hidden", "16", "--iw-samples", "3",
                   "--batch-size", "40"])
    assert summary["task"] == "sbndef" and summary["test_log_px"] >= summary["test_elbo"] - 1.0
    assert meta["param_shapes"]["up1.W0"] == [6, 3] and meta["param_shapes"]["gen1.W0"] == [3, 6]
    assert_eval_estimates(tmp_path / "straight", data, capsys, "sigmoid belief network DEF (--task sbndef)", samples=True)


@pytest.mark.parametrize("settings,message", [
    (dict(estimator="taylor"), "vimco or nvil, not taylor"),
    (dict(iw_samples=1), "give --iw-samples K with K >= 2"),
    (dict(posterior="chain", iw_samples=2), "leave --posterior at the default"),
])
def test_an_sbndef_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.of(**{"task": "sbndef", **settings})
