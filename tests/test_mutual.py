"""The Mutual Autoencoder (--task mae): its loss's gradient in the encoder and in r's network against finite
differences, the score-function gradient in the decoder against the exact gradient of the enumerated
expectation (unbiased), the information estimate's parts, the model's initialisation, a run from the
command line that resumes to the same numbers and that gvae eval, sample and analyze read as the VAE it is,
and the refusals."""
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gvae import ops, value_and_grad
from gvae.cli import main
from gvae.model import VAE
from gvae.models.mutual.model import LOG_2PI_E, MutualAutoencoder, generated_terms, information, mutual_loss
from gvae.training import TrainConfig
from tests.gradcheck import check_vjp
from tests.helpers import trained_straight_and_resumed


def _tiny(posterior="diagonal", seed=0, n=6, n_in=5, latent=2):
    rng = np.random.default_rng(seed)
    model = MutualAutoencoder(n_in, latent, (4,), "elu", posterior, dtype=np.float64)
    params = model.new_params(rng).views
    x = (rng.random((n, n_in)) < 0.4).astype(np.float64)
    eps = rng.standard_normal((2, n, latent))
    z, u = rng.standard_normal((n, latent)), rng.random((n, n_in))
    return model, params, x, eps, z, u


def _part(params, prefix):
    return {k: v for k, v in params.items() if k.startswith(prefix)}


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2 ** 16), posterior=st.sampled_from(["diagonal", "chain", "full"]),
       target=st.floats(0.0, 20.0), weight=st.floats(0.1, 5.0))
def test_the_loss_gradient_in_the_encoder_matches_finite_differences(seed, posterior, target, weight):
    """The encoder reaches the loss through the ELBO alone (the pairs come from the prior and the decoder):
    there the loss is smooth and its gradient is checked against central differences, float64."""
    model, params, x, eps, z, u = _tiny(posterior, seed)
    rest = {k: v for k, v in params.items() if not k.startswith("enc.")}
    check_vjp(lambda part: mutual_loss({**rest, **part}, model, x, eps, z, u, "analytic", 0.8, target, weight)[0],
              [_part(params, "enc.")])


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2 ** 16), posterior=st.sampled_from(["diagonal", "chain", "full"]),
       target=st.floats(0.0, 20.0), weight=st.floats(0.1, 5.0))
def test_the_loss_gradient_in_r_is_the_bounds_and_matches_finite_differences(seed, posterior, target, weight):
    """r's network climbs the bound alone: the loss's gradient in ``mi.*`` is that of -mean log r(z|x') (the
    score term weighs by log r's value, a constant), whose gradient is checked against central differences."""
    model, params, x, eps, z, u = _tiny(posterior, seed)
    rest = {k: v for k, v in params.items() if not k.startswith("mi.")}

    def minus_bound(part):
        return -ops.mean(generated_terms(model, {**rest, **part}, z, u)[0])
    check_vjp(minus_bound, [_part(params, "mi.")])
    _, got = value_and_grad(lambda part: mutual_loss({**rest, **part}, model, x, eps, z, u, "analytic", 0.8, target,
                                                     weight)[0])(_part(params, "mi."))
    _, expected = value_and_grad(minus_bound)(_part(params, "mi."))
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-12, atol=1e-14)


def _enumerated_expectation(model, params, z):
    """sum over every binary x of p_theta(x|z) log r(z|x), averaged over the rows of z: exact."""
    n_in = model.n_in
    xs = np.array(list(itertools.product([0.0, 1.0], repeat=n_in)))
    total = 0.0
    for zi in z:
        logits = model.decode(params, zi[None])[0]
        log_px = (xs * logits - np.logaddexp(0, logits)).sum(-1)
        q = model.mi_family.split(model.mi_net(params, xs), model.sizes[0])
        log_r = model.mi_family.log_prob(q, np.broadcast_to(zi, (1, len(xs), len(zi))))[0]
        total += float(np.exp(log_px) @ log_r)
    return total / len(z)


def test_the_decoders_score_gradient_is_unbiased_for_the_enumerated_expectation():
    """The decoder's gradient of the score term, averaged over many draws of x', is the gradient of the
    expectation E_{x ~ p(x|z)} log r(z|x) over the 2^n binary images (central differences of the exact sum),
    within 5 standard errors: the leave-one-out baseline leaves it unbiased."""
    model, params, _, _, _, _ = _tiny(seed=3, n_in=4)
    rng = np.random.default_rng(11)
    z = rng.standard_normal((8, model.sizes[0]))
    name = "dec.b1"  # the decoder's output bias: every pixel's logit

    def score_only(p, u):
        # The score term of the loss, the only one through which the pairs reach the decoder.
        log_r, log_px = generated_terms(model, p, z, u)
        lr = ops.value_of(log_r)
        baseline = (lr.sum() - lr) / (len(lr) - 1)
        return ops.mean((lr - baseline) * log_px)
    draws = []
    for _ in range(4000):
        u = rng.random((len(z), model.n_in))
        g = value_and_grad(lambda b: score_only({**params, name: b}, u))(params[name])[1]
        draws.append(g)
    draws = np.array(draws)
    mean, se = draws.mean(0), draws.std(0) / np.sqrt(len(draws))
    exact = np.empty_like(params[name])
    h = 1e-6
    for j in range(len(exact)):
        up, down = params[name].copy(), params[name].copy()
        up[j] += h
        down[j] -= h
        exact[j] = (_enumerated_expectation(model, {**params, name: up}, z)
                    - _enumerated_expectation(model, {**params, name: down}, z)) / (2 * h)
    assert np.all(np.abs(mean - exact) < 5 * se + 1e-9), (mean, exact, se)
    assert np.abs(exact).max() > 10 * se.max()  # the check sees the gradient, not noise around zero


def test_the_information_estimate_is_the_prior_entropy_plus_the_mean_log_r():
    model, params, _, _, z, u = _tiny(latent=3)
    log_r, _ = generated_terms(model, params, z, u)
    assert model.prior_entropy() == pytest.approx(1.5 * np.log(2 * np.pi * np.e))
    assert LOG_2PI_E == pytest.approx(1 + np.log(2 * np.pi))
    assert float(information(model, log_r)) == pytest.approx(model.prior_entropy() + log_r.mean())
    # x' is the decoder's Bernoulli draw: u below sigmoid(logits) exactly where a pixel is on.
    logits = model.decode(params, z)
    x = (u < 1 / (1 + np.exp(-logits))).astype(float)
    q = model.mi_family.split(model.mi_net(params, x), 3)
    np.testing.assert_allclose(log_r, model.mi_family.log_prob(q, z[None])[0], rtol=1e-12)


def test_the_loss_reports_the_elbo_terms_and_the_estimate_and_moves_with_the_target():
    model, params, x, eps, z, u = _tiny()
    low, aux = mutual_loss(params, model, x, eps, z, u, target=0.0, weight=2.0)
    high, aux_high = mutual_loss(params, model, x, eps, z, u, target=1e6, weight=2.0)
    bound, rec, kl, m = (float(a) for a in aux)
    assert bound == pytest.approx(rec - kl) and [float(a) for a in aux_high] == [bound, rec, kl, m]
    log_r, log_px = generated_terms(model, params, z, u)
    baseline = (log_r.sum() - log_r) / (len(log_r) - 1)
    score = ((log_r - baseline) * log_px).mean()
    assert low - high == pytest.approx(2 * 2.0 * score)  # sign(m - M) flips from + to - (m is finite)


def test_the_vae_inside_is_initialised_as_a_plain_vae_from_the_same_seed():
    model = MutualAutoencoder(12, 3, (8, 6), "elu", "chain")
    plain = VAE(12, 3, (8, 6), "elu", "chain")
    x = np.random.default_rng(0).random((20, 12))
    ours, theirs = model.new_params(np.random.default_rng(5), x).views, plain.new_params(np.random.default_rng(5), x).views
    assert set(ours) - set(theirs) == {k for k in ours if k.startswith("mi.")} != set()
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)
    assert model.mi_net.sizes == [12, 8, 6, model.layers[0].family.head_size(3)]
    assert model.networks()[-1] is model.mi_net


def test_an_mae_run_from_the_command_line_resumes_to_the_same_numbers(tmp_path, capsys):
    rows, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "mae", "--mi-target", "3", "--mi-weight", "0.5", "--latent", "4", "--hidden", "16",
                   "--posterior", "chain", "--batch-size", "40"])
    assert all(np.isfinite(r["train_mi"]) and np.isfinite(r["valid_mi"]) for r in rows)
    assert meta["config"]["mi_target"] == 3.0 and {"mi.W0", "dec.W0", "enc.W0"} <= set(meta["param_shapes"])
    assert summary["task"] == "mae" and summary["mi_target"] == 3.0
    assert summary["test_elbo"] == pytest.approx(-(summary["test_rate"] + summary["test_distortion"]), rel=1e-6)
    assert np.isfinite(summary["test_mi"]) and np.isfinite(summary["test_rate"])
    # The commands read it as the VAE it is (its information network aside).
    run = tmp_path / "straight"
    assert main(["eval", str(run), "--data", str(data), "--iw-samples", "20", "--quiet"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["test_iwae_1"] <= result["test_iwae_5"] <= result["test_log_likelihood"] < 0
    assert main(["sample", str(run), "--n", "4", "--quiet"]) == 0 and (run / "decoder_samples.png").is_file()
    assert main(["analyze", str(run), "--data", str(data), "--limit", "20", "--quiet"]) == 0
    assert (run / "analysis.json").is_file()


def test_a_batch_of_one_pair_has_no_baseline_and_a_finite_loss_and_gradient():
    """One pair has no others to take a baseline from: it is weighed by its own log r (baseline 0), not by
    a mean over no pairs (0 / 0)."""
    model, params, x, eps, z, u = _tiny(n=1)
    loss, grads = value_and_grad(lambda p: mutual_loss(p, model, x, eps, z, u, target=9.0)[0])(params)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())
    # The score term alone (the loss less the loss without it): -log r grad log p(x'|z), the estimate below 9.
    lr = float(ops.value_of(generated_terms(model, params, z, u)[0])[0])
    _, score = value_and_grad(lambda b: mutual_loss({**params, "dec.b1": b}, model, x, eps, z, u, target=9.0)[0]
                              - mutual_loss({**params, "dec.b1": b}, model, x, eps, z, u, target=9.0, weight=0.0)[0]
                              )(params["dec.b1"])
    _, expected = value_and_grad(lambda b: ops.sum(generated_terms(model, {**params, "dec.b1": b}, z, u)[1]) * -lr
                                 )(params["dec.b1"])
    np.testing.assert_allclose(score, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--limit", "41", "--batch-size", "20"], ["--limit", "1"],
                                   ["--limit", "3", "--batch-size", "1"]], ids=["last-batch-of-one", "one-image",
                                                                                "batch-size-1"])
def test_batches_of_one_image_train_every_step(tmp_path, flags):
    from tests.helpers import write_data
    data = write_data(tmp_path / "d.npz", n=60)
    assert main(["train", "--task", "mae", "--mi-target", "3", "--latent", "2", "--hidden", "8", "--epochs", "2",
                 *flags, "--data", str(data), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped_steps"] == 0 and np.isfinite(summary["test_elbo"])


@pytest.mark.parametrize("settings,message", [
    (dict(), "needs the information to hold: give --mi-target"),
    (dict(mi_target=5.0, latent=(4, 2)), "one stochastic layer"),
    (dict(mi_target=5.0, likelihood="gaussian"), "leave --likelihood at the default"),
    (dict(mi_target=5.0, iw_samples=5), "without --iw-samples"),
    (dict(mi_target=-1.0), "mi_target"),
])
def test_an_mae_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.of(**{"task": "mae", **settings})


def test_the_information_settings_belong_to_mae_only():
    with pytest.raises(ValueError, match="mi_target applies to --task mae only"):
        TrainConfig.of(mi_target=3.0)
    with pytest.raises(ValueError, match="mi_weight applies to --task mae only"):
        TrainConfig.of(mi_weight=2.0)
