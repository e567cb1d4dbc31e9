"""Observation models against dense SciPy references, their gradients, samples and data handling."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.stats import multivariate_normal, norm

from gvae.training.batching import dequantize
from gvae.model.likelihoods import LIKELIHOODS, get_likelihood
from gvae.model.posteriors import dense_factor
from tests.gradcheck import check_vjp

PIXEL = ["logitnormal", "logitnormal-grid", "logitnormal-extgrid"]


def setup(name, n=16, **options):
    return get_likelihood(name, n, **options)


def random_params(lik, rng):
    return {k: rng.standard_normal(s) * 0.3 for k, s in lik.param_shapes().items()}


@pytest.mark.parametrize("name", PIXEL)
@pytest.mark.parametrize("factor", ["decoder", "global"])
@given(seed=st.integers(0, 2**32 - 1))
def test_logitnormal_against_dense_reference(name, factor, seed):
    rng = np.random.default_rng(seed)
    lik = setup(name, factor=factor)
    out = rng.standard_normal((2, 3, lik.output_size())) * 0.5
    params = random_params(lik, rng)
    x = rng.uniform(0.01, 0.99, (3, 16))
    lp = lik.log_prob(out, x, params)
    L = dense_factor(lik._factor(out, params), lik.offsets)
    y = np.log(x / (1 - x))
    for s in range(2):
        for b in range(3):
            Lsb = L[s, b] if factor == "decoder" else L
            ref = multivariate_normal(out[s, b, :16], np.linalg.inv(Lsb @ Lsb.T)).logpdf(y[b])
            ref -= np.sum(np.log(x[b] * (1 - x[b])))
            # (a sum of terms of order 10 can come out near 0: an absolute tolerance at that scale too)
            np.testing.assert_allclose(lp[s, b], ref, rtol=1e-9, atol=1e-9)


def test_lattice_links_are_only_neighbours():
    lik = setup("logitnormal-extgrid", factor="global")
    params = {"lik.L": np.ones((5, 16))}
    L = dense_factor(lik._factor(np.zeros((1, 16)), params), lik.offsets)
    for i, j in zip(*np.nonzero(L)):
        assert max(abs(i // 4 - j // 4), abs(i % 4 - j % 4)) <= 1


@pytest.mark.parametrize("name", ["gaussian"] + PIXEL)
@given(seed=st.integers(0, 2**32 - 1))
def test_gradients(name, seed):
    rng = np.random.default_rng(seed)
    options = {"psi": "decoder"} if name == "gaussian" else {}
    lik = setup(name, **options)
    out = rng.standard_normal((2, 3, lik.output_size())) * 0.5
    x = rng.uniform(0.05, 0.95, (3, 16))
    check_vjp(lambda o: lik.log_prob(o, x, {}), [out], seed=seed)
    glob = setup(name, **({"psi": "global"} if name == "gaussian" else {"factor": "global"}))
    out = rng.standard_normal((2, 3, glob.output_size())) * 0.5
    params = random_params(glob, rng)
    check_vjp(lambda p: glob.log_prob(out, x, p), [params], seed=seed)
    check_vjp(lambda o: glob.log_prob(o, x, params), [out], seed=seed)


def test_gaussian_against_scipy():
    rng = np.random.default_rng(0)
    lik = setup("gaussian", psi="decoder")
    out = rng.standard_normal((1, 4, 32))
    x = rng.random((4, 16))
    var = np.logaddexp(0, out[..., 16:]) + lik.floor
    ref = norm(out[..., :16], np.sqrt(var)).logpdf(x).sum(-1)
    np.testing.assert_allclose(lik.log_prob(out, x, {}), ref, rtol=1e-12)


@pytest.mark.parametrize("name", PIXEL)
def test_samples_have_the_model_covariance_in_logit_space(name):
    rng = np.random.default_rng(1)
    lik = setup(name, factor="global")
    params = random_params(lik, rng)
    params["lik.L"][0] += 1.0
    out = np.zeros((200000, 16))
    x = lik.sample(out, params, rng)
    assert x.shape == (200000, 16) and (0 < x).all() and (x < 1).all()
    y = np.log(x / (1 - x))
    L = dense_factor(lik._factor(out[:1], params), lik.offsets)
    cov = np.linalg.inv(L @ L.T)
    np.testing.assert_allclose(np.cov(y.T), cov, atol=0.03 * np.abs(cov).max())


def test_dequantize_recovers_the_bytes_and_stays_inside():
    k = np.arange(256)
    for x in (k / 256, k / 255):
        v = dequantize(x.astype(np.float32), np.random.default_rng(0), squash=1e-6)
        assert v.dtype == np.float32 and (v > 0).all() and (v < 1).all()
        np.testing.assert_array_equal(np.floor((v.astype(np.float64) - 1e-6) / (1 - 2e-6) * 256), k)


def test_nats_offset_and_refusals():
    lik = setup("logitnormal", n=784, squash=1e-6)
    assert lik.nats_offset() == pytest.approx(784 * (math.log1p(-2e-6) - math.log(256)))
    assert setup("bernoulli").nats_offset() == 0
    with pytest.raises(ValueError, match="binarized"):
        lik.check(np.array([[0.0, 1.0]], np.float32))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        setup("bernoulli").check(np.array([[-0.1, 0.5]]))
    with pytest.raises(ValueError, match="do not fit a square lattice"):
        get_likelihood("logitnormal-grid", 15)
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        get_likelihood("poisson", 784)
    with pytest.raises(ValueError, match="squash"):
        get_likelihood("gaussian", 784, squash=0.7)
    for name in LIKELIHOODS:  # complete when constructed: the units are given then, and checked
        with pytest.raises(ValueError, match=f"{name} likelihood: needs at least one observed unit"):
            get_likelihood(name, 0)
    assert set(LIKELIHOODS) == {"bernoulli", "ar-bernoulli", "gaussian", *PIXEL}


def _ar_reference(out, x, V):
    """log p(x|z) of the autoregressive Bernoulli written out pixel by pixel: logit_j = out_j + sum_{i<j}
    V_ji x_i."""
    total = np.zeros(out.shape[:-1])
    for j in range(x.shape[-1]):
        logit = out[..., j] + x[..., :j] @ V[j, :j]
        total += x[..., j] * logit - np.logaddexp(0, logit)
    return total


@given(seed=st.integers(0, 2**32 - 1))
def test_the_autoregressive_bernoulli_against_its_pixel_by_pixel_reference_and_its_gradients(seed):
    rng = np.random.default_rng(seed)
    lik = setup("ar-bernoulli", n=7)
    out = rng.standard_normal((2, 3, 7))
    x = (rng.random((3, 7)) < 0.5).astype(np.float64)
    params = {"lik.ar": rng.standard_normal((7, 7))}
    np.testing.assert_allclose(lik.log_prob(out, x, params), _ar_reference(out, x, params["lik.ar"]), rtol=1e-12,
                               atol=1e-12)
    check_vjp(lambda o, p: lik.log_prob(o, x, p), [out, params], seed=seed)


def test_the_autoregressive_bernoulli_starts_as_the_factorised_one_and_draws_its_own_conditionals():
    rng = np.random.default_rng(4)
    lik, flat = setup("ar-bernoulli", n=3), setup("bernoulli", n=3)
    params = {"lik.ar": np.ones((3, 3))}
    lik.init(rng, params)
    out, x = rng.standard_normal((2, 4, 3)), (rng.random((4, 3)) < 0.5).astype(np.float64)
    np.testing.assert_array_equal(lik.log_prob(out, x, params), flat.log_prob(out, x))
    # Logits (0, -8, 8) with V_10 = 16 and V_21 = -16: pixel 1 copies pixel 0 and pixel 2 negates pixel 1,
    # each but for e^-8 (3e-4), so the draws are (0, 0, 1) or (1, 1, 0), half each.
    params["lik.ar"] = np.array([[5.0, 5.0, 5.0], [16.0, 5.0, 5.0], [0.0, -16.0, 5.0]])
    draws = lik.sample(np.broadcast_to(np.array([0.0, -8.0, 8.0]), (20000, 3)).copy(), params, rng)
    first = (draws == [0, 0, 1]).all(1).mean()
    second = (draws == [1, 1, 0]).all(1).mean()
    assert first + second > 0.998 and abs(first - 0.5) < 0.02
    # The picture: the conditionals along the most probable path (pixel 0 at 1/2 is off: 0.5 < 0.5 fails).
    np.testing.assert_allclose(lik.mean(np.array([[0.0, -8.0, 8.0]]), params),
                               1 / (1 + np.exp(-np.array([[0.0, -8.0, 8.0]]))))


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--latent", "4"],
                                   ["--task", "darn", "--estimator", "taylor", "--latent", "6", "3"]])
def test_runs_with_the_autoregressive_visible_layer_resume_evaluate_and_draw(tmp_path, capsys, flags):
    """A VAE and a deep DARN over ``ar-bernoulli``: trained straight and resumed to the same numbers, the
    visible weights learned (no longer zero), gvae eval's bounds in order; the VAE's pictures drawn."""
    import json

    from gvae.cli import main
    from gvae.training import checkpoint
    from tests.helpers import trained_straight_and_resumed
    _, summary, meta, data = trained_straight_and_resumed(
        tmp_path, [*flags, "--likelihood", "ar-bernoulli", "--hidden", "16", "--batch-size", "40", "--lr", "3e-3"])
    arrays, meta = checkpoint.load(tmp_path / "straight" / "checkpoint.npz")
    offsets = np.cumsum([0] + [int(np.prod(s)) for s in meta["param_shapes"].values()])
    at = list(meta["param_shapes"]).index("lik.ar")
    assert np.abs(arrays["params"][offsets[at]:offsets[at + 1]]).max() > 0
    assert main(["eval", str(tmp_path / "straight"), "--data", str(data), "--iw-samples", "20", "--quiet"]) == 0
    result = json.loads((tmp_path / "straight" / "eval.json").read_text())
    assert result["test_iwae_1"] <= result["test_iwae_5"] <= result["test_log_likelihood"]
    if "darn" not in flags:
        assert main(["sample", str(tmp_path / "straight"), "--n", "4", "--quiet"]) == 0
        assert (tmp_path / "straight" / "decoder_samples.png").is_file()
