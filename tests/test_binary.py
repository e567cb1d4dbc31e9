"""Binary latent units trained with VIMCO (--task sbn): the log-weights against a NumPy reference, the
leave-one-out signals against their definition, the gradient estimate's mean against the exact gradient
of the bound's expectation (every sample of every unit enumerated), a run from the command line that
resumes to the same numbers, and the refusals."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gvae import ops, value_and_grad
from gvae.models.binary.model import (ENCODER_AR, PRIOR, PRIOR_AR, SIGNALS, BinaryVAE, leave_one_out_signals, log_weights, nvil_loss, score_loss,
                               taylor_loss, vimco_loss)
from tests.gradcheck import check_vjp
from gvae.training import TrainConfig
from tests.helpers import assert_eval_estimates, trained_straight_and_resumed


def _tiny(seed=0, n_in=3, latent=2, hidden=(4,), baseline=False, autoregressive=False):
    rng = np.random.default_rng(seed)
    model = BinaryVAE(n_in, latent, hidden, "elu", dtype=np.float64, baseline=baseline, autoregressive=autoregressive)
    params = dict(model.new_params(rng).views)
    params[PRIOR] = rng.normal(0, 0.5, latent)
    if autoregressive:  # DARN's weights away from zero (zero is the factorised layer)
        params[ENCODER_AR] = rng.normal(0, 1.0, (latent, latent))
        params[PRIOR_AR] = rng.normal(0, 1.0, (latent, latent))
    return model, params, rng


def _central_differences(fn, params, names, h=1e-6):
    """The gradient of the scalar ``fn(params)`` in the parameters ``names``, concatenated: central
    differences, one coordinate at a time."""
    out = []
    for name in names:
        g = np.empty_like(params[name])
        for j in range(g.size):
            up, down = params[name].copy(), params[name].copy()
            up.flat[j] += h
            down.flat[j] -= h
            g.flat[j] = (fn({**params, name: up}) - fn({**params, name: down})) / (2 * h)
        out.append(g.ravel())
    return np.concatenate(out)


def _elu(a):
    return np.where(a > 0, a, np.expm1(np.minimum(a, 0)))


def _bern(logits, v):
    return (v * logits - np.logaddexp(0, logits)).sum(-1)


def test_the_log_weights_are_the_models_written_out_in_numpy():
    model, params, rng = _tiny(n_in=5, latent=3)
    x = (rng.random((4, 5)) < 0.5).astype(float)
    u = rng.random((3, 4, 3))
    logits = _elu(x @ params["enc.W0"] + params["enc.b0"]) @ params["enc.W1"] + params["enc.b1"]
    z = (u < 1 / (1 + np.exp(-logits))).astype(float)
    out = _elu(z @ params["dec.W0"] + params["dec.b0"]) @ params["dec.W1"] + params["dec.b1"]
    rec, log_ratio, log_q = log_weights(model, params, x, u)
    np.testing.assert_allclose(log_q, _bern(logits, z), rtol=1e-12)
    np.testing.assert_allclose(log_ratio, _bern(params[PRIOR], z) - _bern(logits, z), rtol=1e-12)
    np.testing.assert_allclose(rec, _bern(out, x), rtol=1e-12)


@pytest.mark.parametrize("autoregressive", [False, True])
def test_the_prior_draws_are_the_model_written_out_in_numpy(autoregressive):
    """gvae sample's draws: z_i = [u_i < sigmoid(a_i)] (DARN: + sum_{j<i} P_ij z_j, unit by unit), then the
    decoder's output at z."""
    model, params, rng = _tiny(seed=5, n_in=5, latent=4, autoregressive=autoregressive)
    u = rng.random((7, 4))
    P = params[PRIOR_AR] * np.tril(np.ones((4, 4)), -1) if autoregressive else np.zeros((4, 4))
    z = np.zeros((7, 4))
    for i in range(4):
        z[:, i] = u[:, i] < 1 / (1 + np.exp(-(params[PRIOR] + z @ P.T)[:, i]))
    (got,) = model.prior_sample(params, u)
    np.testing.assert_array_equal(got, z)
    out = _elu(z @ params["dec.W0"] + params["dec.b0"]) @ params["dec.W1"] + params["dec.b1"]
    np.testing.assert_allclose(model.likelihood_params(params, [got]), out, rtol=1e-12)


def test_the_signals_are_the_bound_minus_the_bound_without_each_sample():
    log_w = np.random.default_rng(2).normal(-50, 3, (4, 5))
    got = leave_one_out_signals(log_w)
    for k in range(4):
        others = np.delete(log_w, k, axis=0)
        replaced = log_w.copy()
        replaced[k] = others.mean(axis=0)
        want = np.log(np.exp(log_w).mean(0)) - np.log(np.exp(replaced).mean(0))
        np.testing.assert_allclose(got[k], want, rtol=1e-10)


@pytest.mark.parametrize("k", [2, 4])
def test_a_log_weight_of_minus_infinity_has_a_finite_signal(k):
    """A sample the likelihood rules out (log w = -inf) still has its leave-one-out baseline: no signal NaN,
    each the bound minus the bound with that sample replaced by the others' mean (-inf where one of the
    others is -inf), computed in float64 by scipy's logsumexp; finite unless every other sample is ruled
    out too (K = 2: the one sample left is credited with the whole bound, +inf)."""
    from scipy.special import logsumexp
    log_w = np.random.default_rng(2).normal(-50, 3, (k, 5))
    log_w[0, :2] = -np.inf
    log_w[-1, 1] = -np.inf if k > 2 else log_w[-1, 1]
    got = leave_one_out_signals(log_w)
    for j in range(k):
        replaced = log_w.copy()
        replaced[j] = np.delete(log_w, j, axis=0).mean(axis=0)
        want = logsumexp(log_w, axis=0) - logsumexp(replaced, axis=0)
        np.testing.assert_allclose(got[j], want, rtol=1e-10)
    assert not np.isnan(got).any()
    assert np.isfinite(got).all() == (k > 2)


@pytest.mark.parametrize("estimator, autoregressive", [("vimco", False), ("plain", False), ("vimco", True)])
def test_the_gradient_estimate_is_unbiased_for_the_enumerated_expectation_of_the_bound(estimator, autoregressive):
    """E over K = 2 samples of L_K, summed exactly over the 16 pairs of binary codes of a 2-unit layer, has
    central-difference gradients that the mean of 20,000 estimates matches within 5 standard errors, in the
    encoder (score function, VIMCO's signals or the plain L_K), the decoder and the prior (pathwise); with
    DARN's autoregressive layer, in its weights too."""
    model, params, rng = _tiny(seed=4, autoregressive=autoregressive)
    x = np.array([[1.0, 0.0, 1.0]])
    names = ["enc.b1", "dec.b1", PRIOR] + ([ENCODER_AR, PRIOR_AR] if autoregressive else [])
    codes = [np.array(c, float) for c in itertools.product([0, 1], repeat=2)]

    def expected_bound(p):
        total = 0.0
        for z1, z2 in itertools.product(codes, repeat=2):
            zs = np.stack([z1, z2])[:, None, :]                  # (K, B, d)
            u = np.where(zs > 0, 0.0, 1 - 1e-12)                 # z = [u < sigmoid]: the code itself
            rec, log_ratio, log_q = log_weights(model, p, x, u)
            log_w = rec + log_ratio
            total += np.exp(log_q.sum()) * np.log(np.exp(log_w).mean(0))[0]
        return total
    assert_unbiased(lambda p, u: score_loss(p, model, np.repeat(x, u.shape[1], 0), u, SIGNALS[estimator])[0], params,
                    names, _central_differences(expected_bound, params, names), (2, 2), 20_000, rng)


def assert_unbiased(loss, params, names, exact, noise_shape, draws, rng, batch=100):
    """The mean of ``draws`` independent gradient estimates -grad ``loss(params, u)`` (fresh uniforms u of
    ``noise_shape`` (K, units) a point) in the parameters ``names`` lies within 5 standard errors of ``exact``
    (their concatenated gradient), which is itself far from zero (10 standard errors). The estimates are
    drawn ``batch`` at a time: u (K, batch, units) and ``loss`` the mean over its batch of one point's loss,
    so one gradient is the mean of ``batch`` estimates, and the standard error is that of those means."""
    assert draws % batch == 0, f"{draws} draws are not a whole number of batches of {batch}"
    out = []
    for _ in range(draws // batch):
        grads = value_and_grad(lambda p: loss(p, rng.random((noise_shape[0], batch, *noise_shape[1:]))))(params)[1]
        out.append(-np.concatenate([np.ravel(grads[n]) for n in names]))
    out = np.array(out)
    mean, se = out.mean(0), out.std(0, ddof=1) / np.sqrt(len(out))
    assert np.all(np.abs(mean - exact) < 5 * se + 1e-9), (mean, exact, se)
    assert np.abs(exact).max() > 10 * se.max()


def test_an_sbn_run_from_the_command_line_resumes_to_the_same_numbers(tmp_path, capsys):
    _, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "sbn", "--iw-samples", "3", "--latent", "8", "--hidden", "16", "--batch-size", "40"])
    assert summary["task"] == "sbn" and summary["log_px_images"] == 40 and summary["log_px_samples"] == 1000
    assert summary["test_log_px"] > summary["test_elbo"] and PRIOR in meta["param_shapes"]
    assert_eval_estimates(tmp_path / "straight", data, capsys, "binary latent units (--task sbn)", samples=True)


@pytest.mark.parametrize("settings,message", [
    (dict(), "give --iw-samples K with K >= 2"),
    (dict(iw_samples=3, latent=(4, 2)), "one stochastic layer"),
    (dict(iw_samples=3, posterior="chain"), "leave --posterior at the default"),
    (dict(iw_samples=3, kl="mc"), "leave --kl at the default"),
    (dict(iw_samples=3, alpha=0.5), "without --target-rate, --mmd or --alpha"),
    (dict(iw_samples=2, estimator="taylor"), "--estimator taylor trains the ELBO, one sample a point"),
])
def test_an_sbn_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.of(**{"task": "sbn", "latent": 8, **settings})


def test_vimco_needs_two_samples():
    model, params, rng = _tiny()
    with pytest.raises(ValueError, match="2 or more samples per point, got 1"):
        vimco_loss(params, model, np.ones((1, 3)), rng.random((1, 1, 2)))


def test_vimcos_signals_have_less_variance_than_the_plain_score_function():
    """On a small model, the encoder's gradient from VIMCO's leave-one-out signals varies less across draws
    than the plain score function's (both unbiased: the test above)."""
    model, params, rng = _tiny(seed=4, n_in=6, latent=5)
    x = (rng.random((8, 6)) < 0.5).astype(float)
    spread = {}
    for name, signals in SIGNALS.items():
        draws = np.array([value_and_grad(lambda p: score_loss(p, model, x, rng.random((4, 8, 5)), signals)[0])(params)[1]
                          ["enc.b1"] for _ in range(300)])
        spread[name] = draws.var(axis=0).mean()
    assert spread["vimco"] < 0.5 * spread["plain"], spread


def test_nvils_estimate_is_unbiased_for_the_enumerated_elbo_and_its_baseline_fits_by_least_squares():
    """One sample: the mean of 40,000 one-point NVIL estimates (20,000 at each of two points) matches the
    central differences of the ELBO summed over the 4 codes of a 2-unit layer (encoder, decoder, prior) within
    5 standard errors; the baseline's parameters get the gradient of mean (log w - b(x))^2 with log w fixed
    (checked against differences)."""
    model, params, rng = _tiny(seed=6, baseline=True)
    params["base.b1"] = np.array([-3.0])  # a baseline away from zero, so the test sees its use
    x = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    names = ["enc.b1", "dec.b1", PRIOR]
    codes = [np.array(c, float) for c in itertools.product([0, 1], repeat=2)]

    def elbo(p):
        total = 0.0
        for z in codes:
            u = np.where(np.broadcast_to(z, (1, 2, 2)) > 0, 0.0, 1 - 1e-12)
            rec, log_ratio, log_q = log_weights(model, p, x, u)
            total += float((np.exp(log_q) * (rec + log_ratio)).sum() / 2)
        return total
    exact = _central_differences(elbo, params, names)
    # The loss is a mean over its points: 100 copies of the two points take 100 estimates at once.
    assert_unbiased(lambda p, u: nvil_loss(p, model, np.tile(x, (u.shape[1] // 2, 1)), u)[0], params, names, exact,
                    (1, 2), 40_000, rng, batch=200)
    u = rng.random((1, 2, 2))
    rec, log_ratio, _ = log_weights(model, params, x, u)
    target = (rec + log_ratio)[0]
    base = {k: v for k, v in params.items() if k.startswith("base.")}
    rest = {k: v for k, v in params.items() if not k.startswith("base.")}

    def least_squares(b):
        r = target - model.baseline({**rest, **b}, x)[..., 0]
        return (r * r).mean()
    check_vjp(least_squares, [base])
    got = value_and_grad(lambda b: nvil_loss({**rest, **b}, model, x, u)[0])(base)[1]
    want = value_and_grad(least_squares)(base)[1]
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12)


def test_an_nvil_run_trains_its_baseline_and_refuses_more_than_one_sample(tmp_path):
    _, summary, meta, _ = trained_straight_and_resumed(
        tmp_path, ["--task", "sbn", "--estimator", "nvil", "--latent", "8", "--hidden", "16", "--batch-size", "40"])
    assert meta["config"]["estimator"] == "nvil" and "base.W0" in meta["param_shapes"]
    assert np.isfinite(summary["test_log_px"])
    with pytest.raises(ValueError, match="with --estimator nvil trains the ELBO, one sample a point"):
        TrainConfig.of(task="sbn", estimator="nvil", iw_samples=3)
    with pytest.raises(ValueError, match="estimator applies to --task sbn or darn or sbndef or poissondef only"):
        TrainConfig.of(estimator="nvil")
    model, params, rng = _tiny()
    with pytest.raises(ValueError, match="NVIL takes one sample a point and a model with its baseline"):
        nvil_loss(params, model, np.ones((1, 3)), rng.random((1, 1, 2)))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 16), estimator=st.sampled_from(["vimco", "nvil"]))
def test_the_pathwise_gradients_in_the_decoder_and_prior_match_finite_differences(seed, estimator):
    """With the uniforms fixed the codes are fixed, and the decoder and the prior reach the loss through
    log w alone (the learning signals are constants): their gradient is minus that of the bound (L_K, or
    the ELBO with one sample), which is smooth there and checked against central differences."""
    model, params, rng = _tiny(seed=seed, baseline=estimator == "nvil")
    x = (rng.random((4, 3)) < 0.5).astype(float)
    u = rng.random((3 if estimator == "vimco" else 1, 4, 2))
    loss = vimco_loss if estimator == "vimco" else nvil_loss
    part = {k: v for k, v in params.items() if k.startswith("dec.") or k == PRIOR}
    rest = {k: v for k, v in params.items() if k not in part}

    def bound(p):
        rec, log_ratio, _ = log_weights(model, {**rest, **p}, x, u)
        return ops.mean(ops.log_mean_exp(rec + log_ratio, axis=0)[0])
    check_vjp(bound, [part])
    got = value_and_grad(lambda p: loss({**rest, **p}, model, x, u)[0])(part)[1]
    want = value_and_grad(bound)(part)[1]
    for k in want:
        np.testing.assert_allclose(got[k], -want[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("autoregressive", [False, True])
def test_darns_taylor_estimate_is_its_formula_and_biased_only_in_the_encoder(autoregressive):
    """DARN's estimator, enumerated over the 4 codes of a 2-unit layer (its value at a code is
    deterministic): its expectation equals the formula computed independently here (per-unit Taylor
    signals from central differences of log w in a continuous z, score and pathwise parts from differences
    of the log-densities); in the decoder and the prior it is the ELBO's exact gradient (pathwise), in the
    encoder it is not (the Taylor term is not a baseline independent of z)."""
    model, params, _ = _tiny(seed=7, autoregressive=autoregressive)
    x = np.array([[1.0, 0.0, 1.0]])
    names = ["enc.b1", "enc.W1"] + ([ENCODER_AR] if autoregressive else []) + ["dec.b1", PRIOR] + \
        ([PRIOR_AR] if autoregressive else [])
    codes = [np.array(c, float) for c in itertools.product([0, 1], repeat=2)]

    def forced(z):
        return np.where(z[None, None, :] > 0, 0.0, 1 - 1e-12)  # uniforms that draw the code z

    def logits(p, z):  # the encoder's and the prior's logits at codes z (..., 2), DARN's terms included
        mask = np.tril(np.ones((2, 2)), -1)
        a, c = model.encoder(p, x) + 0 * z, p[PRIOR] + 0 * z
        if autoregressive:
            a, c = a + z @ (p[ENCODER_AR] * mask).T, c + z @ (p[PRIOR_AR] * mask).T
        return a, c

    def log_w_cont(p, zc):  # log p(x, z) - log q(z|x) at a continuous z (1, 1, 2), as the signals read it
        a, c = logits(p, zc)
        rec = model.likelihood.log_prob(model.decoder(p, zc), x, p)
        return float((rec + _bern(c, zc) - _bern(a, zc))[0, 0])

    def log_q_unit(p, z, j):
        a = logits(p, z[None, None])[0][0, 0]
        return float(z[j] * a[j] - np.logaddexp(0, a[j]))

    expected_impl = 0.0
    expected_formula = 0.0
    for z in codes:
        q = float(np.exp(log_weights(model, params, x, forced(z))[2]).sum())
        g = value_and_grad(lambda p: taylor_loss(p, model, x, forced(z))[0])(params)[1]
        expected_impl = expected_impl + q * -np.concatenate([g[n].ravel() for n in names])
        h = 1e-6
        signals = [(log_w_cont(params, (z + h * e)[None, None]) - log_w_cont(params, (z - h * e)[None, None])) / (2 * h)
                   * (z[j] - 0.5) for j, e in enumerate(np.eye(2))]
        pathwise = _central_differences(lambda p: float(sum(log_weights(model, p, x, forced(z))[:2])[0, 0]), params,
                                        names)
        score = sum(signals[j] * _central_differences(lambda p: log_q_unit(p, z, j), params, names) for j in range(2))
        expected_formula = expected_formula + q * (pathwise + score)
    np.testing.assert_allclose(expected_impl, expected_formula, rtol=1e-5, atol=1e-7)

    def elbo(p):
        total = 0.0
        for z in codes:
            rec, log_ratio, log_q = log_weights(model, p, x, forced(z))
            total += float(np.exp(log_q).sum() * (rec + log_ratio).sum())
        return total
    exact = _central_differences(elbo, params, names)
    encoder = params["enc.b1"].size + params["enc.W1"].size + (params[ENCODER_AR].size if autoregressive else 0)
    np.testing.assert_allclose(expected_impl[encoder:], exact[encoder:], rtol=1e-5, atol=1e-7)
    assert np.max(np.abs(expected_impl[:encoder] - exact[:encoder])) > 1e-3


def test_a_taylor_run_trains(tmp_path):
    from gvae.cli import main
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    x = (rng.random((60, 784)) < 0.2).astype(np.float32)
    np.savez(data, train_x=x[:40], train_y=np.zeros(40, np.int64), valid_x=x[40:50], valid_y=np.zeros(10, np.int64),
             test_x=x[50:], test_y=np.zeros(10, np.int64))
    out = tmp_path / "run"
    assert main(["train", "--task", "sbn", "--estimator", "taylor", "--data", str(data), "--latent", "6", "--hidden",
                 "8", "--batch-size", "20", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    import json
    summary = json.loads((out / "summary.json").read_text())
    assert np.isfinite(summary["test_elbo"]) and summary["test_log_px"] > summary["test_elbo"]


def test_darns_log_weights_are_the_model_written_out_in_numpy():
    """The autoregressive layer: codes drawn by the sequential rule, scored by the masked logits."""
    model, params, rng = _tiny(seed=3, n_in=5, latent=4, autoregressive=True)
    x = (rng.random((3, 5)) < 0.5).astype(float)
    u = rng.random((2, 3, 4))
    bias = _elu(x @ params["enc.W0"] + params["enc.b0"]) @ params["enc.W1"] + params["enc.b1"]
    mask = np.tril(np.ones((4, 4)), -1)
    Wq, Wp = params[ENCODER_AR] * mask, params[PRIOR_AR] * mask
    z = np.zeros((2, 3, 4))
    for i in range(4):  # unit by unit: each reads the ones drawn before it
        a = bias + z @ Wq.T
        z[..., i] = (u[..., i] < 1 / (1 + np.exp(-a[..., i]))).astype(float)
    out = _elu(z @ params["dec.W0"] + params["dec.b0"]) @ params["dec.W1"] + params["dec.b1"]
    rec, log_ratio, log_q = log_weights(model, params, x, u)
    np.testing.assert_allclose(log_q, _bern(bias + z @ Wq.T, z), rtol=1e-12)
    np.testing.assert_allclose(log_ratio, _bern(params[PRIOR] + z @ Wp.T, z) - _bern(bias + z @ Wq.T, z), rtol=1e-12)
    np.testing.assert_allclose(rec, _bern(out, x), rtol=1e-12)


def test_a_darn_run_from_the_command_line_resumes_to_the_same_numbers(tmp_path, capsys):
    _, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "darn", "--iw-samples", "3", "--latent", "8", "--hidden", "16", "--batch-size", "40"])
    assert summary["task"] == "darn" and summary["test_log_px"] > summary["test_elbo"]
    assert meta["param_shapes"][ENCODER_AR] == [8, 8] and meta["param_shapes"][PRIOR_AR] == [8, 8]
    assert_eval_estimates(tmp_path / "straight", data, capsys, "a DARN (--task darn)", samples=True)
