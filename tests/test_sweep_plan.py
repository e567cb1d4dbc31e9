"""The plan a sweep makes from its run folders: what each run still needs (training, evaluation), and what
is refused unless overwritten."""
import dataclasses

import pytest

from gvae.cli import main
from gvae.io.files import write_json, write_jsonl
from gvae.sweep import state
from gvae.sweep.execute import _record_spec, plan
from gvae.sweep.spec import load_spec
from tests.sweep_helpers import SPEC, write_spec, edit, fit, fake_evaluation


def test_the_plan_trains_what_is_unfinished_and_evaluates_what_is_not_current(tmp_path):
    path = write_spec(tmp_path, edit(SPEC, "seeds = [0, 1]", "seeds = [0]"))
    sweep = load_spec(path)
    done, partial = sweep.runs
    jobs, counts, _ = plan(sweep)
    assert counts == {"finished": 0, "resume": 0, "new": 2, "overwrite": 0, "evaluate": 2}
    assert all("--resume" not in job.train and "--overwrite" not in job.train for job in jobs)
    assert jobs[0].evaluate[:2] == ("eval", str(done.folder.absolute())) and "--limit" in jobs[0].evaluate

    fit(done)
    fit(partial, epochs=1)  # a run stopped after 1 of its 2 epochs
    jobs, counts, _ = plan(sweep)
    assert counts == {"finished": 1, "resume": 1, "new": 0, "overwrite": 0, "evaluate": 2}
    assert jobs[0].train is None and jobs[0].evaluate is not None
    assert "--resume" in jobs[1].train and jobs[1].train[jobs[1].train.index("--epochs") + 1] == "2"

    fake_evaluation(done, sweep.eval)
    jobs, _, _ = plan(sweep)
    assert [job.id for job in jobs] == [partial.id]
    # Other [eval] settings: the finished run is evaluated again, not trained.
    jobs, counts, _ = plan(load_spec(write_spec(tmp_path, edit(path.read_text(), "iw_samples = 10", "iw_samples = 20"))))
    assert jobs[0].id == done.id and jobs[0].train is None and "20" in jobs[0].evaluate
    # More epochs (a setting that may change on resume): the finished run goes on, and is evaluated after.
    jobs, counts, _ = plan(load_spec(write_spec(tmp_path, edit(path.read_text(), "epochs = 2", "epochs = 3"))))
    assert counts["resume"] == 2 and counts["evaluate"] == 2
    assert jobs[0].train[jobs[0].train.index("--epochs") + 1] == "3"


def test_a_run_the_spec_describes_differently_is_refused_unless_overwritten(tmp_path):
    path = write_spec(tmp_path, edit(SPEC, "seeds = [0, 1]", "seeds = [0]"))
    sweep = load_spec(path)
    fit(sweep.runs[0])
    _record_spec(sweep)
    changed = load_spec(write_spec(tmp_path, edit(path.read_text(), "hidden = [16]", "hidden = [32]"), "b.toml"))
    with pytest.raises(ValueError) as e:
        plan(changed)
    message = str(e.value)
    assert "diagonal/seed-0: hidden [32] (the run's: [16])" in message and "--overwrite" in message
    assert "epochs, lr, max_bad_steps, patience may change" in message
    jobs, counts, _ = plan(changed, overwrite=True)
    assert counts["overwrite"] == 1 and "--overwrite" in jobs[0].train
    # Other data: every trained run would mix two data sets.
    other = load_spec(write_spec(tmp_path, edit(path.read_text(), "tiny.npz", "other.npz"), "c.toml"))
    with pytest.raises(ValueError, match="data .*other.npz"):
        plan(other)


def test_a_run_folder_without_a_finished_epoch_is_started_over(tmp_path):
    sweep = load_spec(write_spec(tmp_path))
    run = sweep.runs[0]
    run.folder.mkdir(parents=True)
    (run.folder / "config.json").write_text("{}")  # killed before its first checkpoint
    assert state.training(run.folder, run.config).state == "unstarted"
    jobs, counts, _ = plan(sweep)
    assert counts["overwrite"] == 1 and "--overwrite" in jobs[0].train


def test_a_finished_run_kept_without_its_checkpoint_is_finished(tmp_path, capsys):
    path = write_spec(tmp_path, edit(SPEC, "seeds = [0, 1]", "seeds = [0]"))
    sweep = load_spec(path)
    done, partial = sweep.runs
    fit(done)
    fake_evaluation(done, sweep.eval)
    fit(partial, epochs=1)
    (partial.folder / "summary.json").unlink()  # as when a run is killed in its second epoch
    for run in sweep.runs:
        (run.folder / "checkpoint.npz").unlink()
    assert state.training(done.folder, done.config).state == "finished"
    assert state.training(partial.folder, partial.config).state == "unstarted"  # 1 of 2 epochs: no results
    jobs, counts, _ = plan(sweep)
    assert [job.id for job in jobs] == [partial.id] and counts["finished"] == 1 and counts["overwrite"] == 1
    # More epochs: the plan resumes it, and gvae train says there is nothing to resume from.
    more = load_spec(write_spec(tmp_path, edit(path.read_text(), "epochs = 2", "epochs = 3")))
    jobs, _, _ = plan(more)
    assert "--resume" in jobs[0].train
    assert main(list(jobs[0].train)) == 2
    assert "there is no run to resume" in capsys.readouterr().err
    # Without its checkpoint the run's config.json is its configuration: a damaged one is named.
    # The sweep leaves it as it is, names it, and goes on with the others.
    (done.folder / "config.json").write_text("{not json")
    jobs, _, damaged = plan(sweep)
    assert "config.json: the run has no checkpoint, and its configuration" in damaged[done.id]
    assert [job.id for job in jobs] == [partial.id]


def test_a_run_stopped_early_is_finished_for_its_patience(tmp_path):
    run = load_spec(write_spec(tmp_path)).runs[0]
    run.folder.mkdir(parents=True)
    (run.folder / "checkpoint.npz").write_bytes(b"")
    write_jsonl(run.folder / "metrics.jsonl", [{"epoch": 1}, {"epoch": 2}])
    write_json(run.folder / "summary.json", {"epochs": 2, "stopped_early": True, "best_epoch": 0})
    config = dataclasses.replace(run.config, epochs=10)
    assert state.training(run.folder, config).state == "finished"  # its own patience (None: as on resume)
    assert state.training(run.folder, dataclasses.replace(config, patience=2)).state == "finished"
    assert state.training(run.folder, dataclasses.replace(config, patience=5)).state == "unfinished"
    # A later resume that was cut short: the summary is older than the last epoch.
    write_jsonl(run.folder / "metrics.jsonl", [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}])
    assert state.training(run.folder, config).state == "unfinished"
