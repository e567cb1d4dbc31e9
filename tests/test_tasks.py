"""The tasks a run trains (gvae.training.tasks): the registry, the loop's protocol and the flat shape of the
tasks (each a direct subclass of Task), a task registered by a module of its own training and resuming to the
same numbers without an edit to the loop, the settings that belong to one task, and the data fingerprint runs
were written with."""
import argparse
import dataclasses
import functools
import hashlib
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from gvae.commands import build_parser
from gvae.training import TrainConfig, Trainer, checkpoint
from gvae.training.tasks import TASKS, Task, register_task, task_class
from gvae.models.vib.task import Classify, VibReport
from gvae.training.tasks.generate import Generate
from tests.helpers import make_data

TRAINING = Path(__file__).resolve().parents[1] / "gvae" / "training"


def test_the_built_in_tasks_are_registered_in_order_and_are_the_choices_of_the_command_line():
    assert list(TASKS) == ["generate", "classify", "vcca", "mae", "fullvb", "vlae", "hvm", "sbn", "darn", "corex", "gammadef", "sbndef", "poissondef"]
    assert task_class("generate") is Generate and task_class("classify") is Classify
    train = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    task = next(a for a in train._actions if "--task" in a.option_strings)
    assert task.choices == ["generate", "classify", "vcca", "mae", "fullvb", "vlae", "hvm", "sbn", "darn", "corex", "gammadef", "sbndef", "poissondef"] and task.default == "generate"


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="task 'generate' is registered twice"):
        register_task("generate")(type("Again", (Task,), {}))
    assert TASKS["generate"] is Generate


def test_a_task_without_what_the_loop_asks_cannot_be_made():
    """A task that leaves out one of the abstract members fails when made, naming it, not mid-run."""
    members = {name: getattr(Generate, name) for name in ("build_model", "loss", "inputs", "step_args")}
    partial = type("Partial", (Task,), members)  # as if Generate had not given its report
    with pytest.raises(TypeError, match="report"):
        partial(TrainConfig.of(), None, "cpu")
    assert sorted(Task.__abstractmethods__) == ["build_model", "inputs", "loss", "report", "step_args"]


# The loop's protocol: every public member of Task, its defaults included. What a run reports is the task's
# report, how its runs are read its reading, what it says of the configuration its settings: a member for
# another of those belongs in one of them, not here.
PROTOCOL = {"name", "settings", "build_model", "loss", "inputs", "on_device", "batches", "step_args", "step_inputs",
            "report", "reading"}


def test_the_loops_protocol_keeps_its_members():
    assert {name for name in dir(Task) if not name.startswith("_")} == PROTOCOL and len(PROTOCOL) == 11


def test_every_task_derives_from_task_alone():
    """No task extends another: what tasks share they hold or call (functions, a report, a reading), so a
    chain of tasks, each changing a few members of the one above, cannot come back."""
    import gvae.models  # noqa: F401  (registers the literature models)
    for name, cls in TASKS.items():
        assert cls.__bases__ == (Task,), f"task {name} ({cls.__qualname__}) derives from {cls.__bases__}"
    for a, b in itertools.permutations(TASKS.values(), 2):
        assert not issubclass(a, b), f"{a.__qualname__} derives from the task {b.__qualname__}"


def test_an_unknown_task_is_refused_naming_the_registered_ones():
    with pytest.raises(ValueError, match=r"^invalid training configuration: task must be one of "
                                         r"\['generate', 'classify', 'vcca', 'mae', 'fullvb', 'vlae', 'hvm', 'sbn', 'darn', 'corex', 'gammadef', 'sbndef', 'poissondef'\], got 'regress' "):
        TrainConfig.of(task="regress")


def test_the_loop_names_no_task():
    """What a task does is asked of it: the loop, its state and its files name none."""
    for name in ("trainer.py", "state.py", "runfiles.py", "events.py", "checkpoint.py"):
        text = (TRAINING / name).read_text()
        assert not re.search(r"\bclassify\b|\"generate\"", text), name


class ObjectiveReport(VibReport):
    """The VIB's report with its best epoch the one of the best validation objective."""
    score_label = "validation objective"

    def score(self, valid):
        return valid["valid_objective"]

    def test_summary(self, params, test, best_valid):
        summary = super().test_summary(params, test, best_valid)
        del summary["best_valid_error"]  # the classifier's, 1 - its score
        return {**summary, "best_valid_objective": best_valid}


class ByObjective(Task):
    """The VIB with its best epoch picked by the validation objective: a task of a test module, registered
    as a model's module registers its own, made of the VIB task's pieces and a report of its own."""
    settings = dataclasses.replace(Classify.settings, about="the VIB, its best epoch the one of the best validation "
                                                            "objective")
    loss = staticmethod(Classify.loss)
    build_model = staticmethod(Classify.build_model)
    inputs, step_args, reading = Classify.inputs, Classify.step_args, Classify.reading
    report = functools.cached_property(ObjectiveReport)


@pytest.fixture
def by_objective():
    register_task("vib-objective")(ByObjective)
    yield "vib-objective"
    del TASKS["vib-objective"]


def _strip(rows):
    return [{k: v for k, v in row.items() if not k.startswith("seconds") and k != "resumed_with"} for row in rows]


def test_a_task_of_its_own_module_trains_and_resumes_to_the_same_numbers(tmp_path, by_objective):
    config = TrainConfig.of(task=by_objective, classes=10, latent=2, hidden=(8,), epochs=3, batch_size=50, limit=150,
                         polyak=0.5)
    data = make_data()
    straight = Trainer(config, data, tmp_path / "straight", progress=False, quiet=True).fit()
    Trainer(TrainConfig.of(**{**config.flat(), "epochs": 1}), data, tmp_path / "split", progress=False, quiet=True).fit()
    resumed = Trainer.resume(tmp_path / "split", data, progress=False, quiet=True, epochs=3).fit()
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    again = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert _strip(rows) == _strip(again) and len(rows) == 3
    a, _ = checkpoint.load(tmp_path / "straight" / "checkpoint.npz")
    b, meta = checkpoint.load(tmp_path / "split" / "checkpoint.npz")
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in straight.items() if k != "seconds_per_epoch"} == \
           {k: v for k, v in resumed.items() if k != "seconds_per_epoch"}
    # Its own score picked the best epoch, and its name is the run's task in config.json and the checkpoint.
    objectives = [row["valid_objective"] for row in rows]
    assert straight["best_epoch"] == 1 + objectives.index(max(objectives))
    assert straight["best_valid_objective"] == max(objectives)
    assert json.loads((tmp_path / "split" / "config.json").read_text())["task"] == by_objective
    assert meta["config"]["task"] == by_objective


def test_a_setting_of_some_tasks_is_refused_by_the_others(by_objective):
    assert TrainConfig.of(task=by_objective, classes=6).options.classes == 6  # it reads classes too (options)
    with pytest.raises(ValueError, match="classes applies to --task classify or vib-objective only"):
        TrainConfig.of(classes=6)


def _former_fingerprint(train_x, data, labels=()):
    """The SHA-256 of a run's data as runs were written before the tasks: the training images after the
    limit, the raw validation and test images, then a classify run's labels (train after the limit)."""
    digest = hashlib.sha256()
    for a in (train_x, data["valid"][0], data["test"][0], *labels):
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.data)
    return digest.hexdigest()


@pytest.mark.parametrize("task", ["generate", "classify"])
def test_the_data_fingerprint_is_the_one_runs_were_written_with(tmp_path, task):
    data = make_data()
    trainer = Trainer(TrainConfig.of(task=task, latent=2, hidden=(8,), limit=120), data, tmp_path, progress=False,
                      quiet=True)
    labels = () if task == "generate" else (data["train"][1][:120], data["valid"][1], data["test"][1])
    assert trainer.data_sha256 == _former_fingerprint(data["train"][0][:120], data, labels)


def test_model_names_the_task_as_task_does():
    """``gvae train --model NAME`` (the name the issue of the models gives the flag) is ``--task NAME``."""
    train = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    for flag in ("--task", "--model"):
        args = train.parse_args([flag, "vcca", "--out", "somewhere"])
        assert args.task == "vcca" and args.given_config == ("task",)


def test_a_step_s_inputs_are_a_record_named_after_its_loss():
    """Task.step_inputs: the loss's parameters after (params, model), by name, with the loss's defaults;
    a name the loss lacks is refused when the record is made."""
    from gvae.model.objectives import training_loss
    from gvae.training.tasks.base import step_record
    record = step_record(training_loss)
    assert record._fields == ("x", "eps", "kl", "kl_weight", "iwae", "target_rate", "mmd")
    assert tuple(record(x=1, eps=2)) == (1, 2, "analytic", 1.0, False, None, None)
    with pytest.raises(TypeError):
        record(x=1, eps=2, beta=0.5)
    assert all(step_record(task.loss)._fields for task in TASKS.values())
