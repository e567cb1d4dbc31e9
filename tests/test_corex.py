"""The CorEx autoencoder (--task corex): each marginal's KL and the posterior's total correlation against a
dense float64 reference for every family, the bound equal to the ELBO for a diagonal posterior, the
anchors' weights, the loss's gradient against finite differences, a run that resumes to the same numbers
and that gvae eval reads, and the refusals."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gvae.cli import main
from gvae.model import VAE
from gvae.models.corex.model import corex_loss, corex_terms, marginal_kls, unit_weights
from gvae.model.objectives import elbo_terms
from gvae.training import TrainConfig
from tests.gradcheck import check_vjp
from tests.helpers import trained_straight_and_resumed

FAMILIES = ("diagonal", "ar1", "rank1", "chain", "grid", "extgrid", "full")


def _tiny(posterior, seed=0, n=5, latent=6, n_in=7):
    rng = np.random.default_rng(seed)
    model = VAE(n_in, [latent], [(8,)], "elu", posterior, "bernoulli", np.float64)
    params = model.new_params(rng).views
    x = (rng.random((n, n_in)) < 0.5).astype(np.float64)
    eps = rng.standard_normal((2, n, model.noise_size))
    return model, params, x, eps


@settings(max_examples=14, deadline=None)
@given(name=st.sampled_from(FAMILIES), seed=st.integers(0, 2 ** 16))
def test_the_marginal_kls_and_the_total_correlation_are_the_dense_gaussians(name, seed):
    model, params, x, eps = _tiny(name, seed)
    family = model.layers[0].family
    q = model.infer(params, x, eps)[0][0]
    cov = np.linalg.inv(family.precision(q))
    mu, var = np.asarray(q.mu), np.diagonal(cov, axis1=-2, axis2=-1)
    want = 0.5 * (mu ** 2 + var - 1 - np.log(var))
    np.testing.assert_allclose(marginal_kls(family, q), want, rtol=1e-9, atol=1e-12)
    weights = unit_weights(6, anchors=(1, 4), anchor_weight=0.25)
    rec, rate, kl, tc = corex_terms(model, params, x, eps, weights)
    tc_dense = 0.5 * (np.log(var).sum(-1) - np.linalg.slogdet(cov)[1])
    np.testing.assert_allclose(tc, tc_dense, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(rate, want @ weights + tc_dense, rtol=1e-8)
    elbo_rec, elbo_kl = elbo_terms(model, params, x, eps)
    np.testing.assert_allclose(kl, elbo_kl, rtol=1e-12)
    np.testing.assert_allclose(rec, elbo_rec, rtol=1e-12)
    assert np.all(np.asarray(tc) >= -1e-10)


@pytest.mark.parametrize("posterior", ["diagonal", "chain", "full"])
def test_without_anchors_the_corex_bound_is_the_elbo_and_anchors_lighten_their_units(posterior):
    """The posterior's TC charged, the bound is the ELBO for every family (its TC zero for the diagonal one
    only); an anchor at lambda = 1 takes its unit's marginal KL out of the rate."""
    model, params, x, eps = _tiny(posterior, seed=3)
    loss, (bound, elbo, rec, rate, tc) = corex_loss(params, model, x, eps, unit_weights(6))
    assert bound == pytest.approx(elbo, rel=1e-12)
    assert (tc == pytest.approx(0, abs=1e-12)) == (posterior == "diagonal")
    assert loss == pytest.approx(-elbo, rel=1e-12)
    loss_a, (bound_a, elbo_a, _, rate_a, _) = corex_loss(params, model, x, eps, unit_weights(6, (2,), 1.0))
    q = model.infer(params, x, eps)[0][0]
    dropped = float(np.mean(np.asarray(marginal_kls(model.layers[0].family, q))[:, 2]))
    assert rate - rate_a == pytest.approx(dropped, rel=1e-10) and elbo_a == pytest.approx(elbo, rel=1e-12)
    assert bound_a == pytest.approx(bound + dropped, rel=1e-10)


@pytest.mark.parametrize("posterior", ["diagonal", "chain", "extgrid", "rank1"])
def test_the_corex_loss_gradient_against_finite_differences(posterior):
    model, params, x, eps = _tiny(posterior, seed=5)
    weights = unit_weights(6, anchors=(0, 3), anchor_weight=0.6)
    check_vjp(lambda p_: corex_loss(p_, model, x, eps, weights, kl_weight=0.8)[0], [params])


def test_unit_weights_refuse_units_outside_the_code_repeats_and_weights_outside_zero_one():
    np.testing.assert_array_equal(unit_weights(4, (0, 3), 0.5), [0.5, 1, 1, 0.5])
    for anchors, weight, message in [((4,), 0.5, r"unit indices in 0..3, got \[4\]"),
                                     ((1, 1), 0.5, "distinct"), ((1,), 1.5, r"in \[0, 1\], got 1.5")]:
        with pytest.raises(ValueError, match=message):
            unit_weights(4, anchors, weight)
    model, params, x, eps = _tiny("diagonal")
    with pytest.raises(ValueError, match="closed form"):
        corex_loss(params, model, x, eps, unit_weights(6), kl="mc")


def test_a_corex_run_resumes_to_the_same_numbers_and_gvae_eval_reads_it(tmp_path, capsys):
    rows, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "corex", "--latent", "4", "--hidden", "16", "--posterior", "chain", "--anchors", "0",
                   "--anchor-weight", "0.5", "--batch-size", "40"])
    assert meta["config"]["anchors"] == [0] and meta["config"]["anchor_weight"] == 0.5
    assert {"train_corex", "train_elbo", "train_tc", "valid_corex", "valid_elbo"} <= set(rows[-1])
    assert summary["task"] == "corex" and summary["anchors"] == [0] and len(summary["test_unit_kl"]) == 4
    # the bound lies above the ELBO by the anchor's discount alone: the posterior's TC is charged
    assert summary["test_corex"] == pytest.approx(summary["test_elbo"] + 0.5 * summary["test_unit_kl"][0], rel=1e-9)
    assert summary["test_tc"] > 0 and summary["test_marginal_kl"] == pytest.approx(sum(summary["test_unit_kl"]))
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "straight"), "--data", str(data), "--iw-samples", "3", "--quiet"]) == 0
    evaluated = json.loads((tmp_path / "straight" / "eval.json").read_text())
    assert evaluated["test_elbo"] == pytest.approx(summary["test_elbo"], abs=1.0)


@pytest.mark.parametrize("settings,message", [
    (dict(latent=(4, 2)), "one stochastic layer"),
    (dict(likelihood="logitnormal-grid"), "factorises over the pixels"),
    (dict(iw_samples=5), "without --iw-samples"),
    (dict(kl="mc"), "leave --kl at analytic"),
    (dict(latent=4, anchors=(4,), anchor_weight=0.5), "distinct units of the code, 0..3, got 4"),
    (dict(anchors=(1,)), "go together"),
    (dict(anchor_weight=0.3), "go together"),
    (dict(anchors=(1,), anchor_weight=1.5), r"anchor_weight must lie in \[0, 1\]"),
    (dict(anchors=("one",), anchor_weight=0.5), "unit indices"),
])
def test_a_corex_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.of(**{"task": "corex", **settings})


def test_anchors_belong_to_corex_only():
    with pytest.raises(ValueError, match="anchors applies to --task corex only"):
        TrainConfig.of(anchors=(0,))


def test_the_traversals_vary_one_unit_of_an_images_mean_code_a_row():
    """examples/latent_traversals.py: row r sets unit r of the image's mean code to each value, the other
    units stay at the mean, and the units rank by their mean marginal KL."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "latent_traversals", Path(__file__).resolve().parents[1] / "examples" / "latent_traversals.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model, params, x, eps = _tiny("chain", seed=4)
    values = np.array([-1.0, 0.5, 2.0])
    images = example.traversals(model, params, x[1:2], [4, 0], values)
    assert images.shape == (6, 7)
    mu = np.asarray(model.encode(params, x[1:2]).mu)[0]
    for r, unit in enumerate([4, 0]):
        for c, v in enumerate(values):
            z = mu.copy()
            z[unit] = v
            want = 1 / (1 + np.exp(-np.asarray(model.decode(params, z[None]))))[0]
            np.testing.assert_allclose(images[r * 3 + c], want, rtol=1e-12)
    q = model.encode(params, x)
    np.testing.assert_allclose(example.unit_kls(model, params, x),
                               np.asarray(marginal_kls(model.layers[0].family, q)).mean(0), rtol=1e-12)
