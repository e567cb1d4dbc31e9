"""The training loop's pieces apart: its state and the checkpoint it becomes, and the listeners that
decide what is written and printed (gvae.training.state, .events, .runfiles)."""
import numpy as np
import pytest

from gvae.training import DivergedError, TrainConfig, Trainer, checkpoint
from gvae.training.events import Console, Events
from gvae.training.state import TrainingState
from tests.helpers import make_data

CONFIG = TrainConfig(latent=2, hidden=(8,), epochs=2, batch_size=50, limit=100, posterior="chain")


class Recorder(Events):
    """Remembers what the loop told it, in order."""

    def __init__(self):
        self.calls = []

    def started(self, trainer):
        self.calls.append(("started", trainer.state.epoch))

    def epoch_end(self, trainer, row):
        assert row is trainer.state.metrics[-1]
        self.calls.append(("epoch_end", row["epoch"]))

    def diverged(self, trainer, why):
        self.calls.append(("diverged", why))

    def stopped_early(self, trainer):
        self.calls.append(("stopped_early", trainer.state.epoch))

    def finished(self, trainer, summary):
        self.calls.append(("finished", summary["epochs"]))


def _same_state(a, b):
    for name in ("epoch", "skipped_steps", "bad_steps", "best_valid", "best_epoch", "initial_valid", "metrics"):
        assert getattr(a, name) == getattr(b, name), name
    np.testing.assert_array_equal(a.params.flat, b.params.flat)
    np.testing.assert_array_equal(a.best_flat, b.best_flat)
    assert (a.average is None) == (b.average is None) and a.polyak == b.polyak
    if a.average is not None:
        np.testing.assert_array_equal(a.average, b.average)
    for name in ("m", "v", "step", "lr", "beta1", "clip_norm"):
        np.testing.assert_array_equal(getattr(a.optimizer, name), getattr(b.optimizer, name))


def test_a_state_comes_back_from_its_checkpoint_whole(tmp_path):
    trainer = Trainer(CONFIG, make_data(), tmp_path / "run", progress=False, quiet=True)
    trainer.fit(events=[])
    state = trainer.state
    state.bad_steps, state.skipped_steps = 2, 5  # counters a plain run leaves at 0
    checkpoint.save(tmp_path / "c.npz", *state.to_checkpoint(trainer.config, trainer.data_sha256))
    arrays, meta = checkpoint.load(tmp_path / "c.npz", need=checkpoint.RESUME)
    back = TrainingState.from_checkpoint(arrays, meta, trainer.model, trainer.config, "cpu", state.metrics)
    _same_state(back, state)
    assert back.params.flat is not state.params.flat and back.optimizer.flat is back.params.flat


def test_a_checkpoint_of_other_shapes_is_named(tmp_path):
    trainer = Trainer(CONFIG, make_data(), tmp_path / "run", progress=False, quiet=True)
    arrays, meta = trainer.state.to_checkpoint(trainer.config, trainer.data_sha256)
    meta["param_shapes"]["enc.W0"] = [3, 3]
    with pytest.raises(ValueError, match="THE FILE holds parameters of other shapes"):
        TrainingState.from_checkpoint(arrays, meta, trainer.model, trainer.config, "cpu", [], where="THE FILE")


def test_without_listeners_the_loop_writes_and_prints_nothing(tmp_path, capsys):
    trainer = Trainer(CONFIG, make_data(), tmp_path / "run", progress=False)
    recorder = Recorder()
    summary = trainer.fit(events=[recorder])
    assert recorder.calls == [("started", 0), ("epoch_end", 1), ("epoch_end", 2), ("finished", 2)]
    assert not (tmp_path / "run").exists()
    assert capsys.readouterr() == ("", "")
    assert summary["epochs"] == 2 and len(trainer.state.metrics) == 2


def test_the_default_listeners_write_the_run_the_same_as_listeners_given_explicitly(tmp_path, capsys):
    """fit() with no listeners given is the run folder's files and the console; both paths agree."""
    default = Trainer(CONFIG, make_data(), tmp_path / "a", progress=False)
    default.fit()
    printed = capsys.readouterr().out
    explicit = Trainer(CONFIG, make_data(), tmp_path / "b", progress=False)
    explicit.fit(events=[explicit.files, Console()])
    assert capsys.readouterr().out.count("epoch ") == printed.count("epoch ") == 2
    for name in ("config.json", "summary.json"):
        assert (tmp_path / "a" / name).is_file() and (tmp_path / "b" / name).is_file()
    a, _ = checkpoint.load(tmp_path / "a" / "checkpoint.npz")
    b, _ = checkpoint.load(tmp_path / "b" / "checkpoint.npz")
    np.testing.assert_array_equal(a["params"], b["params"])


def test_a_diverged_epoch_is_told_and_not_reported_as_an_end(tmp_path):
    trainer = Trainer(CONFIG, make_data(), tmp_path / "run", progress=False, quiet=True)
    trainer.validate = lambda: {"valid_elbo": float("nan") if trainer.state.epoch else -50.0}
    recorder = Recorder()
    with pytest.raises(DivergedError, match="validation ELBO is nan"):
        trainer.fit(events=[recorder])
    assert recorder.calls == [("started", 0), ("diverged", "the validation ELBO is nan")]


def test_patience_is_told_as_an_early_stop(tmp_path):
    config = TrainConfig(latent=2, hidden=(8,), epochs=5, batch_size=50, limit=100, patience=1)
    trainer = Trainer(config, make_data(), tmp_path / "run", progress=False, quiet=True)
    values = iter([-50.0, -40.0, -45.0, -44.0, -43.0])
    trainer.validate = lambda: {"valid_elbo": next(values)}
    recorder = Recorder()
    summary = trainer.fit(events=[recorder])
    assert recorder.calls[-2:] == [("stopped_early", 2), ("finished", 2)] and summary["stopped_early"]


def _console_lines(monkeypatch, capsys, epochs, ends):
    """The lines :class:`Console` prints for a run of ``epochs`` whose epochs end at the clock readings
    ``ends`` (pairs: perf_counter, compiling_seconds), the clock starting at (0, 0)."""
    from types import SimpleNamespace

    import gvae.training.events as events
    clock = {"now": 0.0, "compiling": 0.0}
    monkeypatch.setattr(events.time, "perf_counter", lambda: clock["now"])
    monkeypatch.setattr(events, "compiling_seconds", lambda: clock["compiling"])
    monkeypatch.setattr(events, "report_compilations", lambda: print("compiled"))
    trainer = SimpleNamespace(config=SimpleNamespace(epochs=epochs), state=SimpleNamespace(epoch=0), resumed=False,
                              task=SimpleNamespace(report=SimpleNamespace(epoch_line=lambda row: "numbers")))
    console = Console()
    console.started(trainer)
    for epoch, (now, compiling) in enumerate(ends, start=1):
        clock.update(now=now, compiling=compiling)
        trainer.state.epoch = epoch
        console.epoch_end(trainer, {"epoch": epoch, "seconds": 1.0})
    return capsys.readouterr().out.splitlines()


def test_the_time_left_leaves_out_compilation_and_the_first_epoch(monkeypatch, capsys):
    """The first epoch's estimate counted a cold cache's compilation (about 28 min left where 5 remained):
    it leaves the seconds spent compiling out, and later estimates time the epochs after the first."""
    lines = _console_lines(monkeypatch, capsys, 11, [(130.0, 100.0), (160.0, 100.0), (200.0, 110.0)])
    # 30 s of work in the first epoch; then 30 s an epoch after it (epochs 2 and 3: 70 s, 10 of them compiling)
    assert lines[1::2] == ["epoch 1/11  numbers  1.0 s  about 5 min 00 s left",
                           "epoch 2/11  numbers  1.0 s  about 4 min 30 s left",
                           "epoch 3/11  numbers  1.0 s  about 4 min 00 s left"]
    assert lines[::2] == ["compiled"] * 3


def test_the_time_left_is_not_stretched_by_one_paused_epoch(monkeypatch, capsys):
    """An epoch of 30 s that took 630 s of wall time (its process stopped for 10 min) left the estimate at
    the mean of the epochs, 230 s an epoch, for the rest of the run: it is their median, 30 s."""
    lines = _console_lines(monkeypatch, capsys, 10, [(40.0, 0.0), (70.0, 0.0), (700.0, 0.0), (730.0, 0.0),
                                                     (760.0, 0.0)])
    assert lines[7::2] == ["epoch 4/10  numbers  1.0 s  about 3 min 00 s left",
                           "epoch 5/10  numbers  1.0 s  about 2 min 30 s left"]


@pytest.mark.parametrize("polyak", [0.0, 0.9])
def test_the_test_summary_measures_the_last_epochs_parameters_when_asked(polyak, tmp_path):
    """--test-params last (a fixed budget without early stopping, as Wang et al.'s VCCA and Alemi et al.'s
    VIB report): the summary's test numbers are those of the parameters the run evaluates after its last
    epoch (with --polyak, their average), not of the best epoch's; the default stays the best epoch's."""
    data = make_data()
    runs = {}
    for which in ("best", "last"):
        trainer = Trainer(TrainConfig(latent=2, hidden=(8,), epochs=3, limit=150, polyak=polyak, test_params=which),
                          data, tmp_path / which, progress=False, quiet=True)
        runs[which] = trainer, trainer.fit(events=[])
    trainer, summary = runs["last"]
    state = trainer.state
    want = trainer.task.report.test_summary(state.params.unflatten(state.evaluated_flat()), trainer.inputs["test"],
                                            state.best_valid)
    assert summary["test_elbo"] == want["test_elbo"] and summary["tested_epoch"] == 3
    best_trainer, best = runs["best"]
    assert best["test_params"] == "best" and best["tested_epoch"] == best["best_epoch"]
    want = best_trainer.task.report.test_summary(best_trainer.state.params.unflatten(best_trainer.state.best_flat),
                                                 best_trainer.inputs["test"], best_trainer.state.best_valid)
    assert best["test_elbo"] == want["test_elbo"]
