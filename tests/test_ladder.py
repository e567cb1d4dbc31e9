"""The variational ladder autoencoder (--task vlae): its bound against a dense NumPy reference, the
gradients of the ELBO and IWAE losses against finite differences, the ladder's shapes, a run from the
command line that resumes to the same numbers and that gvae eval, sample and analyze read as a VAE's run
(the heads and densities they use checked exactly), a loaded ladder's decoder, and the refusals."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gvae.cli import main
from gvae.models.ladder.model import VLAE
from gvae.model.objectives import elbo, training_loss
from gvae.training import TrainConfig
from gvae.training.runs import load_model
from tests.gradcheck import check_vjp
from tests.helpers import fake_splits, trained_straight_and_resumed


def _tiny(posterior="diagonal", seed=0, n=4, hidden=((5, 4), (3,)), sizes=(2, 3)):
    rng = np.random.default_rng(seed)
    model = VLAE(6, list(sizes), [list(h) for h in hidden], "elu", posterior, dtype=np.float64)
    params = model.new_params(rng).views
    x = (rng.random((n, 6)) < 0.4).astype(np.float64)
    return model, params, x, rng.standard_normal((3, n, model.noise_size))


def _elu(a):
    return np.where(a > 0, a, np.expm1(np.minimum(a, 0)))


def _mlp(params, prefix, h, layers):
    for i in range(layers):
        h = h @ params[f"{prefix}W{i}"] + params[f"{prefix}b{i}"]
        if i < layers - 1:
            h = _elu(h)
    return h


def test_the_bound_is_the_ladders_elbo_written_out_in_numpy():
    """Features of increasing depth, a diagonal Gaussian head on each, the codes fed into the decoder at
    their depths (the top first), Bernoulli pixels, KL of each code to N(0, I) in closed form."""
    model, params, x, eps = _tiny()
    h1 = _elu(_elu(x @ params["enc.W0"] + params["enc.b0"]) @ params["enc.W1"] + params["enc.b1"])
    h2 = _elu(h1 @ params["enc2.W0"] + params["enc2.b0"])
    heads = [h1 @ params["enc.W2"] + params["enc.b2"], h2 @ params["enc2.W1"] + params["enc2.b1"]]
    zs, kl = [], 0.0
    for head, d, e in zip(heads, (2, 3), (eps[..., :2], eps[..., 2:])):
        mu, sigma = head[:, :d], np.logaddexp(0, head[:, d:]) + model.layers[0].family.floor
        zs.append(mu + sigma * e)
        kl = kl + 0.5 * (mu ** 2 + sigma ** 2 - 1 - 2 * np.log(sigma)).sum(-1)
    t2 = _mlp(params, "dec2.", zs[1], 2)                                   # 3 -> 3 -> 4 (h1's width)
    logits = _mlp(params, "dec.", np.concatenate([t2, zs[0]], -1), 3)      # [4 + 2] -> 4 -> 5 -> 6
    rec = (x * logits - np.logaddexp(0, logits)).sum(-1).mean(0)
    np.testing.assert_allclose(elbo(model, params, x, eps), rec - kl, rtol=1e-12)
    # The heads gvae analyze refines, and log q(z_1, z_2 | x) of the draws (the proposals' density).
    for got, want in zip(model.mean_heads(params, x), heads):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    log_q = 0.0
    for head, d, z in zip(heads, (2, 3), zs):
        mu, sigma = head[:, :d], np.logaddexp(0, head[:, d:]) + model.layers[0].family.floor
        log_q = log_q - (0.5 * ((z - mu) / sigma) ** 2 + np.log(sigma) + 0.5 * np.log(2 * np.pi)).sum(-1)
    np.testing.assert_allclose(model.log_q(params, x, zs), log_q, rtol=1e-12)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 16), posterior=st.sampled_from(["diagonal", "chain", "full"]),
       iwae=st.booleans())
def test_the_losses_gradients_match_finite_differences(seed, posterior, iwae):
    model, params, x, eps = _tiny(posterior, seed)
    check_vjp(lambda p: training_loss(p, model, x, eps, "analytic", 0.8, iwae=iwae)[0], [params])


def test_the_deeper_codes_enter_the_decoder_earlier_and_the_shapes_follow_the_widths():
    model = VLAE(784, [16, 8, 4], [[300, 200], [100], [50]])
    dec = [layer.decoder.sizes for layer in model.layers]
    enc = [layer.encoder.sizes for layer in model.layers]
    assert enc == [[784, 300, 200, 32], [200, 100, 16], [100, 50, 8]]
    assert dec == [[200 + 16, 200, 300, 784], [100 + 8, 100, 200], [4, 50, 100]]  # t_l has h_{l-1}'s width
    assert model.noise_size == 28 and model.priors(None, [None] * 3) == [None] * 3
    with pytest.raises(ValueError, match="needs hidden widths"):
        VLAE(784, [16, 8], [[300], []])


def test_a_vlae_run_from_the_command_line_resumes_to_the_same_numbers(tmp_path, capsys):
    _, summary, meta, data = trained_straight_and_resumed(
        tmp_path, ["--task", "vlae", "--latent", "3", "6", "--hidden", "16", "/", "8", "--posterior", "chain",
                   "extgrid", "--batch-size", "40"])
    assert summary["task"] == "vlae" and summary["log_px_images"] == 40 and summary["log_px_samples"] == 1000
    assert np.isfinite(summary["test_log_px"]) and {"enc2.W0", "dec2.W0"} <= set(meta["param_shapes"])
    model, params, config = load_model(tmp_path / "straight")
    assert isinstance(model, VLAE) and config.task == "vlae" and set(params) == set(meta["param_shapes"])
    # gvae eval reads the run as a VAE's: the summary's L_1000 on the same 40 test images, with other noise,
    # is the same estimate within its spread, and the bounds come in order.
    run = tmp_path / "straight"
    assert main(["eval", str(run), "--data", str(data), "--iw-samples", "1000", "--quiet"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["n_test"] == 40 and abs(result["test_log_likelihood"] - summary["test_log_px"]) < 0.1
    bounds = [result["test_iwae_1"], result["test_iwae_5"], result["test_iwae_50"], result["test_log_likelihood"]]
    assert np.all(np.isfinite(bounds)) and bounds == sorted(bounds), result
    # sample draws every layer's code from the prior and decodes them all; analyze refines every layer's
    # posterior and takes each code's ELBO surgery (each q(z_l | x) of x alone, each prior N(0, I)).
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "drawn"), "--quiet"]) == 0
    assert (tmp_path / "drawn_means.png").stat().st_size > 0 and (tmp_path / "drawn_samples.png").stat().st_size > 0
    assert main(["analyze", str(run), "--data", str(data), "--points", "4", "--iw-samples", "20",
                 "--refine-steps", "20", "--surgery-points", "30", "--quiet"]) == 0
    analysis = json.loads((run / "analysis.json").read_text())
    assert "every layer" in analysis["surgery_note"] and analysis["gaps"]["points"] == 4
    for layer in analysis["layers"]:
        s = layer["surgery"]
        assert s["n_points"] == 30 and 0 <= s["mutual_information"] <= s["log_n"] + 1e-6, s
        assert s["mean_kl"] == pytest.approx(s["mutual_information"] + s["marginal_kl"])
    assert np.isfinite([analysis["gaps"]["approximation_gap"], analysis["gaps"]["amortisation_gap"]]).all()


def test_the_ladders_heads_and_densities_are_those_the_gaps_and_proposals_read():
    """gvae analyze's pieces on a ladder: free heads set to the encoder's reproduce the amortised ELBO draw
    for draw (the local q is the amortised q, every layer's), and the model as its own single proposal
    gives the IWAE log-weights of the objectives."""
    from gvae.model.local import LocalVAE, encoder_heads, with_heads
    from gvae.model.objectives import log_weights
    from gvae.model.proposals import mixture_log_weights, proposal_terms
    model, params, x, eps = _tiny("chain", seed=3)
    local = with_heads(params, encoder_heads(model, params, x))
    np.testing.assert_allclose(elbo(LocalVAE(model), local, x, eps), elbo(model, params, x, eps), rtol=1e-12)
    (terms,) = proposal_terms(model, params, [(model, params)], x, [eps])
    np.testing.assert_allclose(mixture_log_weights(terms), sum(log_weights(model, params, x, eps)), rtol=1e-12)


def test_a_loaded_ladder_decodes_every_layers_code_and_refuses_fewer(tmp_path):
    """gvae.load of a ladder run: decode takes every layer's code (a list bottom first), equal to the
    model's decoder; reconstruct decodes the mean pass; one array or a wrong width is refused in words."""
    import gvae
    data = tmp_path / "mnist.npz"
    splits = fake_splits({"train": 60, "valid": 20, "test": 20}, seed=1)
    np.savez(data, **{f"{s}_{part}": splits[s][i] for s in splits for i, part in enumerate("xy")})
    assert main(["train", "--task", "vlae", "--latent", "2", "3", "--hidden", "8", "/", "4", "--epochs", "1",
                 "--data", str(data), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    vae = gvae.load(tmp_path / "run")
    model, params = vae.model, vae.params
    zs = [np.zeros((2, 2), np.float32), np.ones((2, 3), np.float32)]
    np.testing.assert_array_equal(vae.decode(zs), model.likelihood.mean(model.likelihood_params(params, zs), params))
    x = splits["test"][0][:3]
    means = [q.mu for q in vae.encode_layers(x)]
    np.testing.assert_array_equal(vae.reconstruct(x), vae.decode(means))
    assert vae.sample(5).shape == (5, 784)
    with pytest.raises(ValueError, match=r"reads 2 layers' codes \(\(N, 2\), \(N, 3\), bottom first\), got 1"):
        vae.decode(zs[0])
    with pytest.raises(ValueError, match=r"expected latent points of shape \(N, 2\), \(N, 3\), got \(2, 2\), \(2, 4\)"):
        vae.decode([zs[0], np.zeros((2, 4))])


@pytest.mark.parametrize("settings,message", [
    (dict(latent=(4, 2), inference="top-down"), "leave --inference at the default"),
    (dict(latent=(4, 2), inference="top-down", merge="precision"), "--inference, --merge at the default"),
])
def test_a_vlae_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"task": "vlae", **settings})


def test_the_traversals_vary_one_layers_code_a_row():
    """examples/vlae_traversals.py: in each row the other layers' codes stay at one draw, so the columns
    agree with the decoder's output for the codes built by hand."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "vlae_traversals", Path(__file__).resolve().parents[1] / "examples" / "vlae_traversals.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model, params, _, _ = _tiny()
    images = example.traversals(model, params, 2, 3, np.random.default_rng(7))
    assert images.shape == (2 * 2 * 3, 6)
    rng = np.random.default_rng(7)
    for layer, (start, end) in enumerate([(0, 2), (2, 5)]):
        for b, base in enumerate(rng.standard_normal((2, 5))):
            eps = np.tile(base, (3, 1))
            eps[:, start:end] = rng.standard_normal((3, end - start))
            want = 1 / (1 + np.exp(-model.likelihood_params(params, model.prior_sample(params, eps))))
            row = (layer * 2 + b) * 3
            np.testing.assert_allclose(images[row:row + 3], want, rtol=1e-12)
