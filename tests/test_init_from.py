"""gvae train --init-from RUN: a run that starts from another run's best parameters where the names and
shapes match (a DARN given its autoregressive visible layer), and the refusals."""
import numpy as np
import pytest

from gvae.cli import main
from gvae.training import TrainConfig, Trainer, load_model
from tests.helpers import make_data, write_data

DARN = ["--task", "darn", "--estimator", "taylor", "--latent", "6", "3", "--hidden", "12", "--batch-size", "40"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("source")
    data = write_data(folder / "d.npz", n=120)
    assert main(["train", *DARN, "--data", str(data), "--epochs", "2", "--quiet", "--out", str(folder / "run")]) == 0
    return folder / "run", data


def test_a_darn_grown_an_autoregressive_visible_layer_starts_as_the_trained_darn(source, tmp_path):
    run, _ = source
    _, trained, _ = load_model(run, "best")
    config = TrainConfig.of(task="darn", estimator="taylor", latent=(6, 3), hidden=(12,), batch_size=40, epochs=1,
                         likelihood="ar-bernoulli", init_from=str(run), seed=5)
    grown = Trainer(config, make_data(n=120, d=784), tmp_path / "grown", progress=False, quiet=True)
    views = grown.state.params.views
    assert set(views) == set(trained) | {"lik.ar"}
    assert all(np.array_equal(views[name], trained[name]) for name in trained)
    assert not views["lik.ar"].any()  # the new weights as the likelihood starts them: the trained model exactly
    # The same log-weights as the trained DARN's for the same noise: the visible layer adds nothing yet.
    x = grown.inputs["valid"][0][:10]
    u = np.random.default_rng(0).random((4, 10, 9)).astype(np.float32)
    plain = Trainer(TrainConfig.of(task="darn", estimator="taylor", latent=(6, 3), hidden=(12,), batch_size=40,
                                epochs=1, init_from=str(run)), make_data(n=120, d=784), tmp_path / "plain",
                    progress=False, quiet=True)
    np.testing.assert_array_equal(grown.task.reading.log_weights(views)(x, u),
                                  plain.task.reading.log_weights(plain.params.views)(x, u))


def test_the_grown_run_trains_and_records_where_it_started(source, tmp_path):
    run, data = source
    out = tmp_path / "grown"
    assert main(["train", *DARN, "--likelihood", "ar-bernoulli", "--init-from", str(run), "--data", str(data),
                 "--epochs", "2", "--quiet", "--out", str(out)]) == 0
    import json
    assert json.loads((out / "config.json").read_text())["init_from"] == str(run)
    assert main(["train", "--resume", "--out", str(out), "--data", str(data), "--epochs", "3", "--quiet"]) == 0


def test_a_run_of_other_sizes_is_refused_in_one_line(source, tmp_path, capsys):
    run, data = source
    capsys.readouterr()
    assert main(["train", *DARN, "--latent", "5", "3", "--init-from", str(run), "--data", str(data), "--epochs", "1",
                 "--quiet", "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "this model's (12, 5): start from a run of the same sizes where both have it" in err


def test_a_run_with_no_parameter_in_common_is_refused(source):
    from gvae.training.runs import shared_parameters

    class Other:
        dtype = np.dtype(np.float32)

        def param_shapes(self):
            return {"gp.inducing": (4, 2)}
    with pytest.raises(ValueError, match="it has no parameter of this model's"):
        shared_parameters(source[0], Other())


def test_a_folder_without_a_run_is_refused(source, tmp_path, capsys):
    _, data = source
    capsys.readouterr()
    assert main(["train", *DARN, "--init-from", str(tmp_path), "--data", str(data), "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--init-from: {tmp_path} holds no gvae run" in err, err
