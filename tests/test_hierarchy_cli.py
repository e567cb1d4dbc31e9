"""Hierarchies from the command line and in run folders: train, eval, sample, resume, gvae.load; the
configuration's per-layer lists; bad input; one-layer runs written before hierarchies existed."""
import dataclasses
import json
import math

import numpy as np
import pytest

import gvae
from gvae.cli import main
from gvae.model import VAE
from gvae.model.objectives import layer_terms
from gvae.model.posteriors import BandedParams
from gvae.training import TrainConfig, checkpoint
from gvae.training.runs import build_model


def test_a_hierarchy_trains_evaluates_samples_and_loads(tmp_path, data_file):
    out = tmp_path / "h"
    assert main(["train", "--data", str(data_file), "--limit", "80", "--epochs", "2", "--latent", "6", "4",
                 "--hidden", "8", "--posterior", "chain", "diagonal", "--batch-size", "40", "--out", str(out),
                 "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["latent"] == [6, 4] and config["posterior"] == ["chain", "diagonal"] and config["hidden"] == [8]
    assert config["inference"] == "bottom-up"
    assert np.isfinite(json.loads((out / "summary.json").read_text())["test_elbo"])
    assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", "20", "--limit", "10", "--quiet"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert np.isfinite(result["test_log_likelihood"]) and result["test_log_likelihood"] >= result["test_iwae_1"] - 1.0
    assert main(["sample", str(out), "--n", "4"]) == 0
    assert (out / "decoder_samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    vae = gvae.load(out)
    x = np.load(data_file)["test_x"][:5]
    q = vae.encode(x)
    layers = vae.encode_layers(x)
    assert q.mu.shape == (5, 6) and isinstance(q, BandedParams) and [l.mu.shape for l in layers] == [(5, 6), (5, 4)]
    np.testing.assert_array_equal(layers[0].mu, q.mu)
    assert vae.decode(q.mu).shape == (5, 784) and vae.sample(3).shape == (3, 784)
    assert vae.elbo(x).shape == (5,) and np.all(vae.log_likelihood(x, k=10) < 0)
    assert "latent (6, 4)" in repr(vae)


@pytest.mark.slow
def test_analyze_reports_every_layer_of_a_hierarchy(tmp_path, data_file, capsys):
    """Active units and the KL term per layer; the layers' rates add up to the rate, and rate plus
    distortion is minus the ELBO; the gaps refine both layers (the three gaps add up)."""
    out = tmp_path / "h"
    assert main(["train", "--data", str(data_file), "--limit", "80", "--epochs", "2", "--latent", "6", "4",
                 "--hidden", "8", "--posterior", "chain", "diagonal", "--batch-size", "40", "--out", str(out),
                 "--quiet"]) == 0
    # --points above --limit: all 30 test images, and the result says so
    assert main(["analyze", str(out), "--data", str(data_file), "--limit", "30", "--points", "50", "--refine-steps",
                 "40", "--iw-samples", "50"]) == 0
    result = json.loads((out / "analysis.json").read_text())
    assert [(l["layer"], l["latent"], l["posterior"], len(l["activity"])) for l in result["layers"]] == \
        [(0, 6, "chain", 6), (1, 4, "diagonal", 4)]
    assert all(0 <= l["active_units"] <= l["latent"] and l["rate"] > 0 for l in result["layers"])
    assert result["rate"] == pytest.approx(sum(l["rate"] for l in result["layers"]), rel=1e-9)
    assert result["elbo"] == pytest.approx(-(result["rate"] + result["distortion"]), rel=1e-9)
    gaps = result["gaps"]
    assert gaps["points"] == 30 and "gaps_note" not in result
    assert gaps["inference_gap"] == pytest.approx(gaps["approximation_gap"] + gaps["amortisation_gap"], abs=1e-9)
    assert all(math.isfinite(gaps[k]) for k in ("log_likelihood", "elbo_amortised", "elbo_refined"))
    assert gaps["elbo_amortised"] == pytest.approx(result["elbo"], abs=1.0)  # the same q, other noise
    assert all(l["surgery"] is None for l in result["layers"]) and "no ELBO surgery" in result["surgery_note"]
    out = capsys.readouterr().out
    assert "no inference gaps" not in out and "no ELBO surgery: bottom-up" in out
    assert "gaps.png" in result["pictures"] and "surgery.png" not in result["pictures"]


@pytest.mark.slow
def test_per_layer_widths_and_top_down_inference(tmp_path, data_file):
    out = tmp_path / "td"
    assert main(["train", "--data", str(data_file), "--limit", "40", "--epochs", "1", "--latent", "6", "4",
                 "--hidden", "8", "/", "5", "3", "--posterior", "grid", "--inference", "top-down", "--kl", "mc",
                 "--iw-samples", "3", "--warmup", "2", "--batch-size", "20", "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["hidden"] == [[8], [5, 3]] and config["posterior"] == "grid"
    model, params, _ = gvae.training.load_model(out)
    shapes = model.param_shapes()
    assert shapes["enc2.W0"] == (8, 5) and shapes["enc.Wz"] == (4, 24) and shapes["dec2.W2"] == (5, 12)
    assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", "5", "--limit", "6", "--quiet"]) == 0
    # top-down, the top layer's posterior depends on x alone and its prior is N(0, I): its ELBO surgery
    assert main(["analyze", str(out), "--data", str(data_file), "--limit", "12", "--surgery-samples", "2",
                 "--refine-steps", "20", "--iw-samples", "20", "--quiet"]) == 0
    result = json.loads((out / "analysis.json").read_text())
    bottom, top = (l["surgery"] for l in result["layers"])
    assert bottom is None and top["n_points"] == 12 and top["mutual_information"] <= top["log_n"]
    assert "top layer only" in result["surgery_note"]
    assert result["gaps"]["points"] == 12  # top-down with the learned merge: every layer's heads refined
    assert result["pictures"] == [] or result["pictures"] == ["gaps.png", "unit_activity.png"]  # the surgery beside the gaps


def test_a_hierarchy_resumes_to_the_same_numbers(tmp_path, data_file):
    common = ["--data", str(data_file), "--limit", "60", "--latent", "4", "2", "--hidden", "6", "--posterior",
              "ar1", "chain", "--batch-size", "20", "--quiet"]
    assert main(["train", *common, "--epochs", "2", "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", *common, "--epochs", "1", "--out", str(tmp_path / "split")]) == 0
    assert main(["train", *common, "--epochs", "2", "--resume", "--out", str(tmp_path / "split")]) == 0
    strip = lambda line: {k: v for k, v in json.loads(line).items()  # noqa: E731
                          if not k.startswith("seconds") and k != "resumed_with"}
    a, b = ((tmp_path / r / "metrics.jsonl").read_text().splitlines() for r in ("straight", "split"))
    assert [strip(l) for l in a] == [strip(l) for l in b]


def test_a_one_layer_run_of_an_older_gvae_loads_and_resumes(tmp_path, data_file):
    """A run whose config has ``latent: 16``-style scalars and no ``inference`` (as gvae wrote them before
    hierarchies) loads, evaluates and resumes as the one-layer model it is."""
    out = tmp_path / "old"
    assert main(["train", "--data", str(data_file), "--limit", "40", "--epochs", "1", "--latent", "6", "--hidden",
                 "8", "--posterior", "grid", "--grid-shape", "2", "3", "--batch-size", "20", "--out", str(out),
                 "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["latent"] == 6 and config["posterior"] == "grid" and config["grid_shape"] == [2, 3]
    arrays, meta = checkpoint.load(out / "checkpoint.npz", need=checkpoint.RESUME)
    del meta["config"]["inference"]
    del config["inference"]
    checkpoint.save(out / "checkpoint.npz", arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    (out / "config.json").write_text(json.dumps(config))
    vae = gvae.load(out)
    assert vae.model.sizes == (6,) and list(vae.model.param_shapes())[:2] == ["enc.W0", "enc.b0"]
    assert vae.encode(np.load(data_file)["test_x"][:2]).mu.shape == (2, 6)
    assert main(["train", "--data", str(data_file), "--epochs", "2", "--resume", "--out", str(out), "--quiet"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("argv, message", [
    (["--latent", "6", "4", "--posterior", "chain", "diagonal", "grid"],
     "posterior gives 3 per-layer values for 2 stochastic layer"),
    (["--latent", "6", "5", "--posterior", "chain", "grid"], "stochastic layer 2 (grid, 5 units): latent dimension 5 has no"),
    (["--latent", "6", "4", "--hidden", "8", "/", "4", "/", "2"], "hidden gives 3 per-layer values for 2"),
    (["--latent", "6", "4", "--hidden", "8", "/"], "empty list of widths"),
    (["--latent", "6", "4", "--posterior", "grid", "--grid-shape", "2", "3"], "gives 1 pair(s) R C for 2 layer(s)"),
    (["--latent", "6", "4", "--posterior", "chain", "--grid-shape", "2", "3"], "applies only to the grid and extgrid"),
    (["--latent", "6", "--posterior", "grid", "--grid-shape", "2", "3", "4"], "takes pairs R C"),
    (["--latent", "6", "--posterior", "grid", "--grid-shape", "4", "3"], "grid shape 4 x 3 does not hold"),
])
def test_bad_hierarchies_are_one_line_and_exit_2(tmp_path, data_file, capsys, argv, message):
    rc = main(["train", "--data", str(data_file), "--out", str(tmp_path / "r"), "--quiet", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, message", [(["--hidden", "8", "x"], "argument --hidden: expected a positive integer"),
                                           (["--latent", "4", "0"], "argument --latent: expected a positive integer"),
                                           (["--inference", "sideways"], "invalid choice: 'sideways'")])
def test_bad_hierarchy_flags_are_refused_by_the_parser(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", str(tmp_path / "r"), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_config_lists_normalise_and_round_trip():
    one = TrainConfig(latent=[16], posterior=["chain"], hidden=[[500, 500]], grid_shape=None)
    assert (one.latent, one.posterior, one.hidden) == (16, "chain", (500, 500))
    two = TrainConfig(latent=(100, 50), hidden=(200, 200, "/", 100, 100), posterior=("chain", "grid"),
                      grid_shape=(5, 10))
    assert two.layer_sizes() == (100, 50) and two.layer_hidden() == ((200, 200), (100, 100))
    assert two.layer_posteriors() == ("chain", "grid") and two.layer_grid_shapes() == (None, (5, 10))
    again = TrainConfig(**json.loads(json.dumps(dataclasses.asdict(two))))
    assert again == two
    same = TrainConfig(latent=(6, 4), hidden=((8,), (8,)))
    assert same.hidden == (8,) and same.layer_hidden() == ((8,), (8,))
    grids = TrainConfig(latent=(6, 4, 9), posterior=("grid", "chain", "extgrid"), grid_shape=[[3, 2], [3, 3]])
    assert grids.layer_grid_shapes() == ((3, 2), None, (3, 3))
    model = build_model(two, 784)
    assert [layer.family.name for layer in model.layers] == ["chain", "grid"]
    assert model.layers[1].family.layout(50)[0] == (0, 1, 10)


def test_a_fresh_elu_hierarchy_starts_with_moderate_kl_terms():
    """The upper networks' zero output layers: the untrained model's KL terms are of the one-layer
    model's order, not the 10^9 nats that random output layers gave ELU networks."""
    rng = np.random.default_rng(0)
    x = (rng.random((50, 784)) < 0.3).astype(np.float32)
    for inference in ("bottom-up", "top-down"):
        model = VAE(784, [6, 4], [8], "elu", posterior="chain", inference=inference)
        params = model.new_params(np.random.default_rng(0)).views
        eps = rng.standard_normal((1, 50, 10)).astype(np.float32)
        _, kls, _, _ = layer_terms(model, params, x, eps)
        assert all(0 <= float(k.mean()) < 50 for k in kls), [float(k.mean()) for k in kls]


@pytest.mark.slow
def test_plot_of_a_hierarchy_shows_the_bottom_layer(tmp_path, data_file):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data_file), "--limit", "40", "--epochs", "1", "--latent", "6", "2",
                 "--hidden", "8", "--posterior", "extgrid", "diagonal", "--grid-shape", "2", "3", "--batch-size",
                 "20", "--out", str(out), "--quiet"]) == 0
    assert main(["plot", str(out), "--data", str(data_file)]) == 0
    names = {p.name for p in out.glob("*.png")}
    assert {"decoder_means.png", "cholesky_diagonals.png", "correlation.png"} <= names and "manifold.png" not in names
