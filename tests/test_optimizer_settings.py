"""The optimiser's settings beside the learning rate: the staircase decay (--lr-decay, --lr-decay-epochs),
Adam's beta1 (--adam-beta1) and Polyak averaging (--polyak), as Alemi et al. train the deep VIB: each
reaches the loop, the average is the one its formula gives and is what the run evaluates and keeps, and
a resumed run continues to the same numbers."""
import json

import numpy as np
import pytest

from gvae.cli import main
from gvae.io.files import read_jsonl
from gvae.training import TrainConfig, Trainer, checkpoint
from gvae.training.config import learning_rate
from gvae.training.validation import dataset_elbo
from gvae.training.batching import EVAL_SEED
from gvae.training.state import TrainingState
from gvae.kernels import generator
from tests.helpers import make_data

CONFIG = TrainConfig(latent=2, hidden=(8,), epochs=2, batch_size=50, limit=100, posterior="chain", polyak=0.9)


def test_the_decay_is_a_staircase_on_top_of_the_schedule():
    config = TrainConfig(lr=1e-3, lr_decay=0.5, lr_decay_epochs=2)
    assert [learning_rate(config, e) for e in range(5)] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    iwae = TrainConfig(lr=1e-3, schedule="iwae", lr_decay=0.5)
    assert learning_rate(iwae, 1) == pytest.approx(1e-3 * 10 ** (-1 / 7) * 0.5)
    assert learning_rate(TrainConfig(lr=1e-3), 7) == 1e-3


def test_beta1_reaches_adam(tmp_path):
    trainer = Trainer(TrainConfig(latent=2, hidden=(8,), adam_beta1=0.5), make_data(), tmp_path, progress=False)
    assert trainer.optimizer.beta1 == 0.5


def test_the_average_is_the_bias_corrected_mean_of_the_iterates(tmp_path):
    """a_t / (1 - D^t) = sum_s (1 - D) D^(t - s) theta_s / (1 - D^t), with theta_s the parameters after step s."""
    trainer = Trainer(CONFIG, make_data(), tmp_path / "run", progress=False, quiet=True)
    state = trainer.state
    np.testing.assert_array_equal(state.evaluated_flat(), state.params.flat)  # no step yet: the parameters
    iterates = []
    step = trainer.step

    def recording_step(*args):
        result = step(*args)
        iterates.append(state.params.flat.astype(np.float64))
        return result

    trainer.step = recording_step
    trainer.fit(events=[])
    t, d = len(iterates), CONFIG.polyak
    assert t == state.optimizer.step == 4
    ref = sum((1 - d) * d ** (t - s) * theta for s, theta in enumerate(iterates, 1)) / (1 - d ** t)
    np.testing.assert_allclose(state.evaluated_flat(), ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(state.evaluated_flat(), state.params.flat, atol=1e-4)  # really an average
    # What is validated, and kept as the best model, is the average.
    valid = dataset_elbo(trainer.model, state.params.unflatten(state.evaluated_flat()), trainer.valid_x,
                         generator("cpu", EVAL_SEED), kl=CONFIG.kl)
    assert trainer.validate()["valid_elbo"] == valid
    best = state.metrics[state.best_epoch - 1]
    assert best["valid_elbo"] == max(r["valid_elbo"] for r in state.metrics)
    if state.best_epoch == state.epoch:
        np.testing.assert_array_equal(state.best_flat, state.evaluated_flat())


def test_without_averaging_the_run_evaluates_its_parameters_and_stores_no_average(tmp_path):
    trainer = Trainer(TrainConfig(latent=2, hidden=(8,), epochs=1, limit=100, batch_size=50), make_data(),
                      tmp_path / "run", progress=False, quiet=True)
    trainer.fit()
    assert trainer.state.average is None and trainer.state.evaluated_flat() is trainer.state.params.flat
    arrays, _ = checkpoint.load(tmp_path / "run" / "checkpoint.npz", need=checkpoint.RESUME)
    assert "average_params" not in arrays


def test_a_state_with_an_average_comes_back_from_its_checkpoint_whole(tmp_path):
    trainer = Trainer(CONFIG, make_data(), tmp_path / "run", progress=False, quiet=True)
    trainer.fit(events=[])
    arrays, meta = trainer.state.to_checkpoint(trainer.config, trainer.data_sha256)
    checkpoint.save(tmp_path / "c.npz", arrays, meta)
    arrays, meta = checkpoint.load(tmp_path / "c.npz", need=checkpoint.RESUME)
    back = TrainingState.from_checkpoint(arrays, meta, trainer.model, trainer.config, "cpu", trainer.state.metrics)
    np.testing.assert_array_equal(back.average, trainer.state.average)
    np.testing.assert_array_equal(back.evaluated_flat(), trainer.state.evaluated_flat())
    del arrays["average_params"]
    with pytest.raises(ValueError, match="THE FILE lacks average_params, the running average of a run with Polyak"):
        TrainingState.from_checkpoint(arrays, meta, trainer.model, trainer.config, "cpu", [], where="THE FILE")


def test_an_average_of_the_wrong_shape_is_refused_on_loading(tmp_path):
    trainer = Trainer(CONFIG, make_data(), tmp_path / "run", progress=False, quiet=True)
    arrays, meta = trainer.state.to_checkpoint(trainer.config, trainer.data_sha256)
    arrays["average_params"] = arrays["average_params"][:-1]
    checkpoint.save(tmp_path / "c.npz", arrays, meta)
    with pytest.raises(ValueError, match="average_params is float32 of shape"):
        checkpoint.load(tmp_path / "c.npz", need=checkpoint.RESUME)


def test_a_run_with_every_setting_resumes_to_the_same_numbers(tmp_path, data_file):
    common = ["--data", str(data_file), "--limit", "80", "--latent", "3", "--hidden", "8", "--batch-size", "20",
              "--lr-decay", "0.5", "--lr-decay-epochs", "2", "--adam-beta1", "0.5", "--polyak", "0.99", "--quiet"]
    assert main(["train", *common, "--epochs", "3", "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", *common, "--epochs", "1", "--out", str(tmp_path / "split")]) == 0
    assert main(["train", "--resume", "--data", str(data_file), "--epochs", "3", "--quiet",
                 "--out", str(tmp_path / "split")]) == 0
    strip = lambda row: {k: v for k, v in row.items() if not k.startswith("seconds") and k != "resumed_with"}  # noqa: E731
    a, b = (read_jsonl(tmp_path / run / "metrics.jsonl") for run in ("straight", "split"))
    assert [strip(r) for r in a] == [strip(r) for r in b]
    assert [r["lr"] for r in a] == pytest.approx([1e-3, 1e-3, 5e-4])
    config = json.loads((tmp_path / "split" / "config.json").read_text())
    assert (config["lr_decay"], config["lr_decay_epochs"], config["adam_beta1"], config["polyak"]) == (0.5, 2, 0.5, 0.99)
    sa, sb = (json.loads((tmp_path / run / "summary.json").read_text()) for run in ("straight", "split"))
    assert sa["test_elbo"] == sb["test_elbo"]


@pytest.mark.parametrize("flag,value,expected", [
    ("--polyak", "1", "expected a number in [0, 1), got 1"),
    ("--polyak", "-0.1", "expected a number in [0, 1), got -0.1"),
    ("--adam-beta1", "nan", "expected a number in [0, 1), got nan"),
    ("--lr-decay", "0", "expected a number in (0, 1], got 0"),
    ("--lr-decay", "1.5", "expected a number in (0, 1], got 1.5"),
    ("--lr-decay-epochs", "0", "expected a positive integer, got 0"),
])
def test_bad_values_are_refused_before_any_work(tmp_path, capsys, flag, value, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "r"), flag, value])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"gvae: error: argument {flag}: {expected} (see gvae train --help)\n"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("settings,message", [(dict(polyak=1.0), r"polyak must lie in \[0, 1\)"),
                                              (dict(adam_beta1=-0.5), r"adam_beta1 must lie in \[0, 1\)"),
                                              (dict(lr_decay=2.0), r"lr_decay must lie in \(0, 1\]"),
                                              (dict(lr_decay_epochs=0), "lr_decay_epochs must be >= 1")])
def test_the_configuration_refuses_them_from_python_too(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)
