"""Hierarchical variational models (--task hvm): the extended space's log-weights against a NumPy reference,
their exponential's mean against p(x) by quadrature (the weights are unbiased whatever q and r are), the
loss's gradient against finite differences, a run from the command line that resumes to the same numbers,
and the refusals."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gvae.models.hierarchical.model import SCALE_FLOOR, HVM, hvm_loss, log_weights
from gvae.training import TrainConfig
from tests.gradcheck import check_vjp
from tests.helpers import assert_eval_estimates, trained_straight_and_resumed

LOG_2PI = np.log(2 * np.pi)


def _tiny(posterior="diagonal", seed=0, n=3, n_in=5, latent=2):
    rng = np.random.default_rng(seed)
    model = HVM(n_in, latent, (4,), "elu", posterior, dtype=np.float64)
    params = model.new_params(rng).views
    x = (rng.random((n, n_in)) < 0.4).astype(np.float64)
    return model, params, x, rng.standard_normal((2, n, model.noise_size))


def _elu(a):
    return np.where(a > 0, a, np.expm1(np.minimum(a, 0)))


def _net(params, prefix, h):
    return _elu(h @ params[f"{prefix}W0"] + params[f"{prefix}b0"]) @ params[f"{prefix}W1"] + params[f"{prefix}b1"]


def _diag_log_prob(head, v, floor):
    k = v.shape[-1]
    mu, sigma = head[..., :k], np.logaddexp(0, head[..., k:]) + floor
    return (-0.5 * ((v - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * LOG_2PI).sum(-1)


def test_the_log_weights_are_the_extended_spaces_written_out_in_numpy():
    model, params, x, eps = _tiny()
    d, floor = 2, model.family.floor
    head = _net(params, "enc.", x)                                   # (B, 4 d): lambda's mean and raw scale
    lam = head[:, :2 * d] + (np.logaddexp(0, head[:, 2 * d:]) + floor) * eps[..., :2 * d]
    scale = np.logaddexp(0, lam[..., d:]) + SCALE_FLOOR
    z = lam[..., :d] + scale * eps[..., 2 * d:]
    log_qz = (-0.5 * eps[..., 2 * d:] ** 2 - np.log(scale) - 0.5 * LOG_2PI).sum(-1)
    logits = _net(params, "dec.", z)
    rec = (x * logits - np.logaddexp(0, logits)).sum(-1)
    r_head = _net(params, "rev.", np.concatenate([z, np.broadcast_to(x, z.shape[:-1] + x.shape[-1:])], -1))
    log_ratio = ((-0.5 * z ** 2 - 0.5 * LOG_2PI).sum(-1) + _diag_log_prob(r_head, lam, floor)
                 - _diag_log_prob(head, lam, floor) - log_qz)
    got = log_weights(model, params, x, eps)
    np.testing.assert_allclose(got[0], rec, rtol=1e-12)
    np.testing.assert_allclose(got[1], log_ratio, rtol=1e-12)


def test_the_prior_draws_are_zs_slice_of_the_noise_decoded():
    """gvae sample's draws: z ~ N(0, I), z's slice of a pass's noise, then the decoder's output."""
    model, params, _, eps = _tiny(latent=3)
    (z,) = model.prior_sample(params, eps[0])
    np.testing.assert_array_equal(z, eps[0][:, 6:])
    np.testing.assert_allclose(model.likelihood_params(params, [z]), _net(params, "dec.", eps[0][:, 6:]), rtol=1e-12)


def test_the_weights_mean_is_p_of_x():
    """E w = p(x) on the extended space (r integrates to 1 over lambda): a one-unit code, p(x) by
    Gauss-Hermite quadrature of p(x|z) N(z; 0, 1), the mean of 400,000 weights within 4 standard errors.
    The weights are kept bounded, so that the standard error means what it says: q(z|lambda) wider than the
    prior (lambda's raw scale near 1.5) and r narrower than q(lambda|x) in every direction; the networks'
    weights stay random (scaled down), and r still depends on z and x."""
    model, params, x, _ = _tiny(seed=5, n=2, n_in=3, latent=1)
    params = {k: (0.3 if k.startswith("enc.") or k.startswith("dec.") else 0.1) * v for k, v in params.items()}
    # heads: [mean of (lambda_m, lambda_s), raw scale of (lambda_m, lambda_s)]
    params["enc.b1"] = params["enc.b1"] + np.array([0.0, 1.5, -1.0, -1.0])
    params["rev.b1"] = params["rev.b1"] + np.array([0.0, 1.5, -2.5, -2.5])
    rng = np.random.default_rng(1)
    w = np.exp(sum(log_weights(model, params, x, rng.standard_normal((400_000, 2, model.noise_size)))))
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    logits = _net(params, "dec.", nodes[:, None])                    # (80, n_in)
    lik = np.exp((x[:, None, :] * logits - np.logaddexp(0, logits)).sum(-1))  # (B, 80)
    p_x = lik @ weights / np.sqrt(2 * np.pi)
    mean, se = w.mean(0), w.std(0) / np.sqrt(len(w))
    assert np.all(np.abs(mean - p_x) < 4 * se), (mean, p_x, se)
    assert np.all(se < 0.01 * p_x) and w.max() < 50 * p_x.max()  # sharp, and no weight dominates


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 16), posterior=st.sampled_from(["diagonal", "chain", "full"]),
       kl_weight=st.floats(0.1, 1.0))
def test_the_loss_gradient_matches_finite_differences(seed, posterior, kl_weight):
    model, params, x, eps = _tiny(posterior, seed)
    check_vjp(lambda p: hvm_loss(p, model, x, eps, kl_weight)[0], [params])


def test_an_hvm_run_from_the_command_line_resumes_to_the_same_numbers(tmp_path, capsys):
    _, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "hvm", "--posterior", "chain", "--latent", "3", "--hidden", "16", "--batch-size", "40"])
    assert summary["task"] == "hvm" and summary["log_px_images"] == 40 and summary["log_px_samples"] == 1000
    assert summary["test_log_px"] > summary["test_elbo"]  # L_1000 above the one-draw bound, on the same images
    assert {"enc.W0", "rev.W0", "dec.W0"} <= set(meta["param_shapes"]) and meta["param_shapes"]["rev.W0"][0] == 3 + 784
    assert_eval_estimates(tmp_path / "straight", data, capsys, "hierarchical variational model (--task hvm)", samples=True)


@pytest.mark.parametrize("settings,message", [
    (dict(latent=(4, 2)), "one stochastic layer"),
    (dict(iw_samples=5), "without --iw-samples"),
    (dict(kl="mc"), "leave --kl at the default"),
    (dict(posterior="grid", grid_shape=(2, 2)), "leave --grid-shape at the default"),
])
def test_an_hvm_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"task": "hvm", "latent": 4, **settings})
