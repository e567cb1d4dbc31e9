"""DARN's deeper variant (gvae/models/darn/model.py): its log-weights written out in NumPy, VIMCO's estimate
unbiased and DARN's Taylor estimate equal to its formula by enumeration over the codes of two small layers,
and the task's runs (resume, refusals)."""
import itertools

import numpy as np
import pytest

from gvae import value_and_grad
from gvae.models.binary.model import SIGNALS, score_loss, taylor_loss
from gvae.models.darn.model import PRIOR, DeepDARN, encoder_ar, prior_ar
from tests.helpers import assert_eval_estimates, trained_straight_and_resumed
from tests.test_binary import _bern, _central_differences, _elu, assert_unbiased

MASK2 = np.tril(np.ones((2, 2)), -1)


def _tiny(seed=0, n_in=3, latent=(2, 1), hidden=(4,)):
    """A float64 model with the autoregressive weights and the prior away from zero."""
    rng = np.random.default_rng(seed)
    model = DeepDARN(n_in, latent, hidden, "elu", dtype=np.float64)
    params = dict(model.new_params(rng).views)
    params[PRIOR] = rng.normal(0, 0.5, latent[-1])
    for layer, k in enumerate(latent):
        params[encoder_ar(layer)] = rng.normal(0, 1.0, (k, k))
        params[prior_ar(layer)] = rng.normal(0, 1.0, (k, k))
    return model, params, rng


def _logits(model, p, x, z1, z2):
    """The four layers' logits of a two-layer model at codes z1 (..., d1), z2 (..., d2), in NumPy."""
    d1, d2 = z1.shape[-1], z2.shape[-1]
    m1, m2 = np.tril(np.ones((d1, d1)), -1), np.tril(np.ones((d2, d2)), -1)
    enc = _elu(x @ p["enc.W0"] + p["enc.b0"]) @ p["enc.W1"] + p["enc.b1"]
    q1 = enc + z1 @ (p[encoder_ar(0)] * m1).T
    q2 = z1 @ p["up1.W0"] + p["up1.b0"] + z2 @ (p[encoder_ar(1)] * m2).T
    p2 = p[PRIOR] + z2 @ (p[prior_ar(1)] * m2).T
    p1 = z2 @ p["gen1.W0"] + p["gen1.b0"] + z1 @ (p[prior_ar(0)] * m1).T
    return q1, q2, p1, p2


def _rec(p, x, z1):
    return _bern(_elu(z1 @ p["dec.W0"] + p["dec.b0"]) @ p["dec.W1"] + p["dec.b1"], x)


def test_the_log_weights_are_the_model_written_out_in_numpy():
    """Codes drawn unit by unit, bottom layer first, each reading the units before it; scored by the masked
    logits of both layers."""
    model, params, rng = _tiny(seed=3, n_in=5, latent=(4, 3))
    x = (rng.random((3, 5)) < 0.5).astype(float)
    u = rng.random((2, 3, 7))
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    z1, z2 = np.zeros((2, 3, 4)), np.zeros((2, 3, 3))
    for i in range(4):
        z1[..., i] = u[..., i] < sig(_logits(model, params, x, z1, z2)[0][..., i])
    for i in range(3):  # layer 2's logits read z1 (now drawn) and the units of z2 before i
        z2[..., i] = u[..., 4 + i] < sig(_logits(model, params, x, z1, z2)[1][..., i])
    q1, q2, p1, p2 = _logits(model, params, x, z1, z2)
    rec, log_ratio, log_q = model.log_weights(params, x, u)
    np.testing.assert_allclose(log_q, _bern(q1, z1) + _bern(q2, z2), rtol=1e-12)
    np.testing.assert_allclose(log_ratio, _bern(p1, z1) + _bern(p2, z2) - _bern(q1, z1) - _bern(q2, z2), rtol=1e-12)
    np.testing.assert_allclose(rec, _rec(params, x, z1), rtol=1e-12)


def test_the_prior_draws_are_the_model_written_out_in_numpy():
    """gvae sample's draws: the top layer unit by unit from the prior's logits, then z_1 unit by unit from
    gen_1(z_2) and its own units before each; decoded at z_1."""
    model, params, rng = _tiny(seed=4, n_in=5, latent=(4, 3))
    u = rng.random((6, 7))
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    m1, m2 = np.tril(np.ones((4, 4)), -1), np.tril(np.ones((3, 3)), -1)
    z1, z2 = np.zeros((6, 4)), np.zeros((6, 3))
    for i in range(3):
        z2[:, i] = u[:, 4 + i] < sig(params[PRIOR] + z2 @ (params[prior_ar(1)] * m2).T)[:, i]
    for i in range(4):
        z1[:, i] = u[:, i] < sig(z2 @ params["gen1.W0"] + params["gen1.b0"] + z1 @ (params[prior_ar(0)] * m1).T)[:, i]
    codes = model.prior_sample(params, u)
    np.testing.assert_array_equal(codes[0], z1)
    np.testing.assert_array_equal(codes[1], z2)
    out = _elu(z1 @ params["dec.W0"] + params["dec.b0"]) @ params["dec.W1"] + params["dec.b1"]
    np.testing.assert_allclose(model.likelihood_params(params, codes), out, rtol=1e-12)


def _forced(codes):
    """Uniforms that draw the given codes (K, B, units): z = [u < sigmoid]."""
    return np.where(codes > 0, 0.0, 1 - 1e-12)


CODES = [np.array(c, float) for c in itertools.product([0, 1], repeat=3)]  # the 8 codes of layers (2, 1)


def test_vimcos_estimate_is_unbiased_for_the_enumerated_expectation_of_the_bound():
    """E over K = 2 samples of L_K, summed exactly over the 64 pairs of codes of layers of 2 and 1 units, has
    central-difference gradients that the mean of 12,000 estimates matches within 5 standard errors: in the
    encoder, the upward map and the encoder's autoregressive weights (score function), the decoder, the
    downward map, the prior and its autoregressive weights (pathwise)."""
    model, params, rng = _tiny(seed=4)
    x = np.array([[1.0, 0.0, 1.0]])
    names = ["enc.b1", "up1.W0", encoder_ar(0), "dec.b1", "gen1.W0", PRIOR, prior_ar(0)]

    def expected_bound(p):
        total = 0.0
        for c1, c2 in itertools.product(CODES, repeat=2):
            rec, log_ratio, log_q = model.log_weights(p, x, _forced(np.stack([c1, c2])[:, None, :]))
            total += np.exp(log_q.sum()) * np.log(np.exp(rec + log_ratio).mean(0))[0]
        return total
    assert_unbiased(lambda p, u: score_loss(p, model, np.repeat(x, u.shape[1], 0), u, SIGNALS["vimco"])[0], params,
                    names, _central_differences(expected_bound, params, names), (2, 3), 12_000, rng)


def test_darns_taylor_estimate_is_its_formula_over_both_layers():
    """DARN's estimator enumerated over the 8 codes of layers (2, 1) (its value at a code is deterministic):
    at each code and in expectation it equals the formula computed here in NumPy, each unit's signal the central difference of
    log w in that unit at a continuous code (through the upward and downward maps and the autoregressive
    weights) times (z_j - 1/2), score parts from differences of each unit's log q, pathwise parts from
    differences of log w; and in the decoder, the downward map and the prior it is the ELBO's exact
    gradient, in the encoder not."""
    model, params, _ = _tiny(seed=7)
    x = np.array([[1.0, 0.0, 1.0]])
    names = ["enc.b1", "up1.W0", encoder_ar(0), encoder_ar(1), "dec.b1", "gen1.W0", PRIOR, prior_ar(0)]

    def split(c):
        return c[None, :2], c[None, 2:]

    def log_w_cont(p, c):
        z1, z2 = split(c)
        q1, q2, p1, p2 = _logits(model, p, x, z1, z2)
        return float((_rec(p, x, z1) + _bern(p1, z1) + _bern(p2, z2) - _bern(q1, z1) - _bern(q2, z2))[0])

    def log_q(p, c):
        z1, z2 = split(c)
        q1, q2 = _logits(model, p, x, z1, z2)[:2]
        return float((_bern(q1, z1) + _bern(q2, z2))[0])

    def log_q_unit(p, c, j):
        q = np.concatenate(_logits(model, p, x, *split(c))[:2], axis=-1)[0]
        return float(c[j] * q[j] - np.logaddexp(0, q[j]))

    impl, formula, h = 0.0, 0.0, 1e-6
    for c in CODES:
        u = _forced(c[None, None])
        q = np.exp(log_q(params, c))
        g = value_and_grad(lambda p: taylor_loss(p, model, x, u)[0])(params)[1]
        at_code = -np.concatenate([g[n].ravel() for n in names])
        signals = [(log_w_cont(params, c + h * e) - log_w_cont(params, c - h * e)) / (2 * h) * (c[j] - 0.5)
                   for j, e in enumerate(np.eye(3))]
        pathwise = _central_differences(lambda p: log_w_cont(p, c), params, names)
        score = sum(signals[j] * _central_differences(lambda p: log_q_unit(p, c, j), params, names) for j in range(3))
        # code by code: in expectation the path from z_1 through layer 2's encoder logits cancels (the score of
        # q(z_2|z_1) in z_1 has mean zero), so only the estimate at each code shows it
        np.testing.assert_allclose(at_code, pathwise + score, rtol=1e-5, atol=1e-7)
        impl = impl + q * at_code
        formula = formula + q * (pathwise + score)
    np.testing.assert_allclose(impl, formula, rtol=1e-5, atol=1e-7)

    exact = _central_differences(lambda p: sum(np.exp(log_q(p, c)) * log_w_cont(p, c) for c in CODES), params, names)
    encoder = sum(params[n].size for n in names[:4])
    np.testing.assert_allclose(impl[encoder:], exact[encoder:], rtol=1e-5, atol=1e-7)
    assert np.max(np.abs(impl[:encoder] - exact[:encoder])) > 1e-3


def test_one_layer_is_refused():
    with pytest.raises(ValueError, match="two or more layers"):
        DeepDARN(5, (4,), (3,))
    with pytest.raises(ValueError, match="two or more layers of positive sizes"):
        DeepDARN(5, (4, 0), (3,))


@pytest.mark.parametrize("estimator", ["taylor", "vimco"])
def test_a_deep_darn_run_resumes_to_the_same_numbers(tmp_path, capsys, estimator):
    flags = ["--task", "darn", "--estimator", estimator, "--latent", "8", "4", "--hidden", "16", "--batch-size", "40"]
    _, summary, meta, data = trained_straight_and_resumed(
        tmp_path, flags + (["--iw-samples", "3"] if estimator == "vimco" else []))
    assert summary["task"] == "darn" and np.isfinite(summary["test_elbo"])
    assert summary["test_log_px"] > summary["test_elbo"]
    shapes = meta["param_shapes"]
    assert shapes[encoder_ar(0)] == [8, 8] and shapes[prior_ar(1)] == [4, 4] and shapes["up1.W0"] == [8, 4]
    assert shapes["gen1.W0"] == [4, 8]
    assert_eval_estimates(tmp_path / "straight", data, capsys, "a DARN (--task darn)", samples=True)
