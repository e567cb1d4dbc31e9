"""gvae sweep and gvae table: the spec and every bad spec, the plan a sweep makes from its run folders, the
table's maths, a parent-watching child process, and a tiny sweep on a Dask LocalCluster killed mid-way
and resumed (the same table as an uninterrupted one)."""
import dataclasses
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gvae.cli import main
from gvae.commands import build_parser
from gvae.io.files import write_json, write_jsonl
from gvae.sweep import state
from gvae.sweep.execute import _record_spec, plan, train_flags
from gvae.sweep.spec import SpecError, load_spec
from gvae.sweep.table import aggregate, build_table, curves, mean_std, write_table
from gvae.training import TrainConfig, Trainer, rundir
from tests.helpers import make_data

REPO = Path(__file__).resolve().parents[1]

SPEC = """
[sweep]
out = "sweep"
seeds = [0, 1]
data = "tiny.npz"

[base]
latent = 4
hidden = [16]
activation = "tanh"
epochs = 2
batch_size = 50

[grid]
posterior = ["diagonal", "chain"]

[eval]
iw_samples = 10
limit = 50
"""


def write_spec(folder, text=SPEC, name="spec.toml"):
    path = Path(folder) / name
    path.write_text(text)
    return path


def edit(text, old, new):
    assert old in text, old
    return text.replace(old, new)


# 1. The spec

def test_a_spec_gives_its_runs_seed_by_seed(tmp_path):
    sweep = load_spec(write_spec(tmp_path))
    assert sweep.out == tmp_path / "sweep" and sweep.data == tmp_path / "tiny.npz"
    assert (sweep.seeds, sweep.threads, sweep.device) == ((0, 1), 1, "cpu")
    assert [run.id for run in sweep.runs] == ["diagonal/seed-0", "chain/seed-0", "diagonal/seed-1", "chain/seed-1"]
    assert sweep.runs[3].config == TrainConfig(posterior="chain", latent=4, hidden=(16,), activation="tanh",
                                               epochs=2, batch_size=50, seed=1)
    assert sweep.runs[3].folder == tmp_path / "sweep" / "chain" / "seed-1"
    assert sweep.eval == {"iw_samples": 10, "limit": 50}
    assert load_spec(write_spec(tmp_path), out=tmp_path / "elsewhere").runs[0].folder == \
        tmp_path / "elsewhere" / "diagonal" / "seed-0"


def test_the_grid_is_crossed_and_configs_add_variants_over_base(tmp_path):
    text = edit(SPEC, 'posterior = ["diagonal", "chain"]',
                'posterior = ["diagonal", "grid"]\nhidden = [[16], [8, 8]]')
    text = edit(text, "hidden = [16]\n", "") + '\n[[configs]]\nname = "wide"\nhidden = [64]\nlr = 3e-3\n'
    sweep = load_spec(write_spec(tmp_path, text))
    assert list(sweep.configs) == ["diagonal_16", "diagonal_8x8", "grid_16", "grid_8x8", "wide"]
    grid = next(run for run in sweep.runs if run.name == "grid_8x8")
    assert (grid.config.posterior, grid.config.hidden) == ("grid", (8, 8))
    wide = next(run for run in sweep.runs if run.name == "wide")
    assert (wide.config.posterior, wide.config.hidden, wide.config.lr, wide.config.latent) == ("diagonal", (64,), 3e-3, 4)
    assert len(sweep.runs) == 10


def test_the_example_spec_of_the_ggm_table(tmp_path):
    sweep = load_spec(REPO / "examples" / "ggm_sweep.toml")
    assert list(sweep.configs) == ["diagonal", "chain", "extgrid"] and sweep.seeds == (0, 1)
    assert sweep.eval == {"iw_samples": 5000} and sweep.out == REPO / "examples" / ".." / "runs" / "ggm"
    config = sweep.runs[0].config
    assert (config.latent, config.hidden, config.activation, config.likelihood) == (16, (500, 500), "elu", "bernoulli")
    assert (config.schedule, config.epochs, config.lr, config.patience) == ("iwae", 200, 1e-3, 30)


@pytest.mark.slow
def test_the_ggm_results_beside_the_paper(tmp_path):
    sweep = load_spec(REPO / "examples" / "ggm_sweep.toml", tmp_path / "sweep")
    _record_spec(sweep)
    runs = {run.id: run for run in sweep.runs}
    epochs = sweep.runs[0].config.epochs
    numbers = {"diagonal": ((-94.0, -90.0), (-96.0, -90.5)), "chain": ((-93.0, -89.0), (-93.5, -89.2)),
               "extgrid": ((-92.0, -88.5), None)}
    for name, seeds in numbers.items():
        for seed, result in enumerate(seeds):
            if result is not None:
                fake_run(runs[f"{name}/seed-{seed}"], [1.0] * epochs, dict(test_elbo=result[0], test_log_likelihood=result[1],
                                                                          iw_samples=5000, n_test=10000), sweep.eval,
                         valid=[-100.0 + 0.01 * (seed + 1) * i for i in range(epochs)])
    fake_run(runs["extgrid/seed-1"], [1.0] * 50, valid=[-120.0 + i for i in range(50)])  # still training
    done = subprocess.run([sys.executable, str(REPO / "examples" / "ggm_results.py"), str(sweep.out), "--out",
                           str(tmp_path / "results")], capture_output=True, text=True, env=environment())
    assert done.returncode == 0, done.stderr
    res = json.loads((tmp_path / "results" / "ggm_table.json").read_text())
    assert (res["epochs"], res["iw_samples"], res["n_test"], res["complete"]) == (epochs, 5000, 10000, False)
    diagonal, chain = res["families"]["diagonal"], res["families"]["chain"]
    # the validation ELBO rises 0.01 (seed 0) and 0.02 (seed 1) per epoch: 0.5 and 1.0 over the last 50
    best = {"mean": pytest.approx(-100 + 0.015 * (epochs - 1)), "std": pytest.approx(0.01 * (epochs - 1) / math.sqrt(2)),
            "n_seeds": 2}
    gain = {"mean": pytest.approx(0.75), "std": pytest.approx(0.5 / math.sqrt(2)), "n_seeds": 2}
    assert diagonal["learning_curves"] == {"best_valid_elbo": best, "late_gain": gain, "late_gain_window": 50}
    assert diagonal["test_elbo"] == {"mean": -95.0, "std": pytest.approx(math.sqrt(2.0)), "n_seeds": 2}
    assert diagonal["paper"] == {"test_elbo": -93.4, "test_log_likelihood": -89.2}
    # chain - diagonal: -93.25 + 95 = 1.75, standard error sqrt(0.125 / 2 + 2 / 2)
    assert chain["minus_diagonal"]["test_elbo"] == {"mean": pytest.approx(1.75),
                                                    "standard_error": pytest.approx(math.sqrt(0.0625 + 1.0))}
    assert res["families"]["extgrid"]["minus_diagonal"]["test_elbo"]["standard_error"] is None  # one seed
    text = (tmp_path / "results" / "ggm_table.md").read_text()
    assert "| diagonal | -95.00 ± 1.41 | -93.4 | -90.25 ± 0.35 | -89.2 | 2 of 2 |" in text
    assert "- extgrid/seed-1: training not finished (50 epochs done)" in text and text == done.stdout
    assert res["families"]["extgrid"]["learning_curves"]["best_valid_elbo"]["n_seeds"] == 1  # not the unfinished run
    assert "| diagonal | " + f"{-100 + 0.015 * (epochs - 1):.2f} ± {0.01 * (epochs - 1) / math.sqrt(2):.2f} | 0.75 ± 0.35 |" in text
    assert (tmp_path / "results" / "ggm_curves.png").is_file() == (importlib.util.find_spec("matplotlib") is not None)
    refused = subprocess.run([sys.executable, str(REPO / "examples" / "ggm_results.py"), str(tmp_path / "results")],
                             capture_output=True, text=True, env=environment())
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "holds no sweep" in refused.stderr

    # --archive: the evaluated runs without their checkpoints, a sweep folder of its own that gives the
    # same table, and that a sweep goes on from by training only the run it lacks.
    archived = subprocess.run([sys.executable, str(REPO / "examples" / "ggm_results.py"), str(sweep.out), "--out",
                               str(tmp_path / "again"), "--archive", str(tmp_path / "archive")],
                              capture_output=True, text=True, env=environment())
    assert archived.returncode == 0, archived.stderr
    assert "archived 5 evaluated run(s)" in archived.stdout
    files = sorted(str(f.relative_to(tmp_path / "archive")) for f in (tmp_path / "archive").rglob("*") if f.is_file())
    assert "sweep.toml" in files and not any("checkpoint" in f or "extgrid/seed-1" in f for f in files)
    assert "diagonal/seed-1/sweep_eval.json" in files and "diagonal/seed-1/metrics.jsonl" in files
    again = subprocess.run([sys.executable, str(REPO / "examples" / "ggm_results.py"), str(tmp_path / "archive"),
                            "--out", str(tmp_path / "from_archive")], capture_output=True, text=True, env=environment())
    assert again.returncode == 0, again.stderr
    from_archive = json.loads((tmp_path / "from_archive" / "ggm_table.json").read_text())
    for family, entry in res["families"].items():
        for key in ("test_elbo", "test_log_likelihood", "epochs", "learning_curves"):
            assert from_archive["families"][family][key] == entry[key], (family, key)
    assert from_archive["families"]["extgrid"]["missing"] == [{"seed": 1, "reason": "not trained yet"}]
    jobs, counts, _ = plan(load_spec(tmp_path / "archive" / "sweep.toml", tmp_path / "archive"))
    assert [job.id for job in jobs] == ["extgrid/seed-1"] and counts["finished"] == 5 and counts["new"] == 1
    into_itself = subprocess.run([sys.executable, str(REPO / "examples" / "ggm_results.py"), str(sweep.out), "--out",
                                  str(tmp_path / "again"), "--archive", str(sweep.out)],
                                 capture_output=True, text=True, env=environment())
    assert into_itself.returncode == 2 and "another folder" in into_itself.stderr


def test_train_flags_give_the_same_configuration_to_gvae_train(tmp_path):
    """What a task passes to gvae train parses back to the configuration of the spec."""
    text = edit(SPEC, "epochs = 2", "epochs = 2\nlr = 3e-4\nsquash = 1e-7\npatience = 3")
    text += '\n[[configs]]\nname = "g"\nposterior = "grid"\ngrid_shape = [2, 2]\n'
    for run in load_spec(write_spec(tmp_path, text)).runs:
        args = build_parser().parse_args(["train", "--out", "x", *train_flags(run.config)])
        assert TrainConfig(**{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__}) == run.config


BAD = [  # (edit of SPEC, where the message points, what it says was expected)
    (("hidden = [16]", "hiden = [16]"), "[base]", "unknown key 'hiden' (did you mean hidden?)"),
    (("[eval]", "[evaluation]"), "the top level", "unknown key 'evaluation'"),
    (("seeds = [0, 1]", "seeds = [0, 1]\nthread = 2"), "[sweep]", "did you mean threads?"),
    (("latent = 4", "latent = 0"), "[base] latent", "expected a positive integer, got 0"),
    (("latent = 4", "latent = 4.5"), "[base] latent", "expected a positive integer, got '4.5'"),
    (("latent = 4", "latent = true"), "[base] latent", "expected a positive integer, got 'True'"),
    (("epochs = 2", "lr = -1"), "[base] lr", "expected a positive finite number"),
    (("hidden = [16]", "hidden = [[16]]"), "[base] hidden", "expected one value"),
    (("hidden = [16]", "grid_shape = [4]"), "configuration 'diagonal'", "grid_shape takes pairs R C"),
    (('"diagonal", "chain"', '"diagonal", "nope"'), "[grid] posterior", "expected one of ar1, chain"),
    (('["diagonal", "chain"]', "[]"), "[grid] posterior", "expected a non-empty list"),
    (('["diagonal", "chain"]', '"chain"'), "[grid] posterior", "expected a non-empty list"),
    (('posterior = ["diagonal", "chain"]', ""), "[grid]", "expected a table of lists"),
    (('[grid]\nposterior = ["diagonal", "chain"]', ""), "[grid]", "describes no configuration"),
    (('["diagonal", "chain"]', '["chain"]\nhidden = [16, 16]'), "[grid] hidden",
     "lists 16 twice; a value of hidden is itself a list"),
    (("hidden = [16]", "hidden = [16]\nposterior = \"chain\""), "[grid] posterior", "also set in [base]"),
    (("seeds = [0, 1]", "seeds = [0, 0]"), "[sweep] seeds", "lists seed 0 twice"),
    (("seeds = [0, 1]", "seeds = []"), "[sweep] seeds", "expected a non-empty list of seeds"),
    (("seeds = [0, 1]", "seeds = 1"), "[sweep] seeds", "expected a non-empty list of seeds"),
    (("seeds = [0, 1]", "seeds = [-1]"), "[sweep] seeds", "expected a non-negative integer"),
    (("seeds = [0, 1]", ""), "[sweep] seeds", "expected a non-empty list of seeds"),
    (("latent = 4", "latent = 4\nseed = 3"), "[base] seed", "[sweep] seeds"),
    (('out = "sweep"', ""), "[sweep] out", "--out"),
    (('out = "sweep"', "out = 3"), "[sweep] out", "expected a path"),
    (('data = "tiny.npz"', 'data = "tiny.npz"\ndevice = "tpu"'), "[sweep] device", "expected one of cpu, cuda"),
    (('data = "tiny.npz"', 'data = "tiny.npz"\nthreads = 0'), "[sweep] threads", "expected a positive integer"),
    (("[sweep]", "[swep]"), "the top level", "unknown key 'swep'"),
    (("epochs = 2", "epochs = 2\nsamples = 2\niw_samples = 2"), "configuration 'diagonal'",
     "use either Monte Carlo samples for the ELBO or importance samples"),
    (("iw_samples = 10", "k = 10"), "[eval]", "unknown key 'k'"),
    (("iw_samples = 10", "iw_samples = 0"), "[eval] iw_samples", "expected a positive integer"),
    (("iw_samples = 10", 'params = "middle"'), "[eval] params", "expected one of best, last, got 'middle'"),
    (("[eval]", '[configs]\nname = "x"\n[eval]'), "configs", "write each as [[configs]]"),
    (("[eval]", "[[configs]]\nlatent = 3\n[eval]"), "[[configs]] #1 name", "expected the configuration's name"),
    (("[eval]", '[[configs]]\nname = "a/b"\n[eval]'), "configuration 'a/b'", "a name is a folder name"),
    (("[eval]", '[[configs]]\nname = "table.json"\n[eval]'), "configuration 'table.json'", "not ending in .json"),
    (("[eval]", '[[configs]]\nname = "chain"\nlr = 0.01\n[eval]'), "configuration 'chain'", "given twice"),
    (("[eval]", '[[configs]]\nname = "same"\nposterior = "chain"\n[eval]'), "configuration 'same'",
     "has every setting of configuration 'chain'"),
    (("[eval]", '[[configs]]\nname = "x"\nlatnet = 3\n[eval]'), "[[configs]] 'x'", "did you mean latent?"),
]


@pytest.mark.parametrize("change, where, expected", BAD, ids=[f"{c[0][0][:12]}->{c[0][1][:14]}" for c in BAD])
def test_a_bad_spec_is_one_line_naming_file_key_and_expectation(tmp_path, capsys, change, where, expected):
    path = write_spec(tmp_path, edit(SPEC, *change))
    with pytest.raises(SpecError) as e:
        load_spec(path)
    message = str(e.value)
    assert message.startswith(f"{path}: {where}: ") and expected in message, message
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gvae: error: ") and expected in err


@pytest.mark.parametrize("content, expected", [
    (b"[sweep\nout = ", "is not a valid TOML file"),
    (b"seeds = [0, 1\n", "is not a valid TOML file"),
    (b"\xff\xfe[sweep]", "is not a TOML file (not UTF-8 text)"),
    (None, "there is no sweep spec at"),
    ("folder", "is a folder; expected a sweep spec file"),
])
def test_a_file_that_is_no_spec_is_one_line(tmp_path, capsys, content, expected):
    path = tmp_path / "spec.toml"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and str(path) in err


def test_without_dask_the_sweep_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    assert main(["sweep", str(write_spec(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "gvae[dask]"' in err
    assert not (tmp_path / "sweep").exists()


def test_workers_with_a_scheduler_is_refused(tmp_path, capsys):
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'gvae[dask]')")
    assert main(["sweep", str(write_spec(tmp_path)), "--scheduler", "tcp://localhost:1", "--workers", "2"]) == 2
    assert "--workers sets the size of the local cluster" in capsys.readouterr().err


def test_the_local_cluster_runs_dask_s_bookkeeping_rarely(monkeypatch):
    distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'gvae[dask]')")
    import dask

    from gvae.sweep.execute import _connect

    def periods(server):
        return {k: server.periodic_callbacks[k].callback_time for k in ("tick", "monitor")}

    client, cluster = _connect(distributed, None, 1)
    try:
        assert periods(cluster.scheduler) == {"tick": 1000, "monitor": 5000}  # ms (Dask's defaults: 20, 500)
        (worker,) = client.run(lambda dask_worker: (periods(dask_worker), dask.config.get(
            "distributed.worker.profile.enabled"), dask_worker.monitor.monitor_disk_io)).values()
        assert list(worker) == [{"tick": 1000, "monitor": 5000}, False, False]
    finally:
        client.close()
        cluster.close()
    assert dask.config.get("distributed.worker.profile.enabled")  # the caller's configuration is untouched


def test_a_folder_that_holds_no_sweep_is_refused(tmp_path, capsys):
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'gvae[dask]')")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "notes.txt").write_text("the user's")
    (tmp_path / "tiny.npz").write_bytes(b"")
    assert main(["sweep", str(write_spec(tmp_path))]) == 2
    assert "is not empty and holds no sweep" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["notes.txt"]


# 2. The plan: what each run folder still needs

def fit(run, epochs=None):
    """Train ``run`` in-process (on small generated data) for ``epochs`` (default: its own)."""
    config = run.config if epochs is None else dataclasses.replace(run.config, epochs=epochs)
    Trainer(config, make_data(n=100, d=36), run.folder, quiet=True).fit()


def fake_evaluation(run, settings, **result):
    write_json(run.folder / "eval.json", {"test_elbo": -1.0, "test_log_likelihood": -0.5, "iw_samples": 10,
                                          "n_test": 50, "seconds": 1.0, **result})
    state.record_evaluation(run.folder, settings)


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


# 3. The table

def fake_run(run, seconds, result=None, settings=None, valid=None):
    """A run folder as the table reads it: ``seconds`` per epoch trained (with validation ELBOs ``valid``
    and a rate that halves each epoch), and an evaluation if ``result``."""
    run.folder.mkdir(parents=True)
    (run.folder / "checkpoint.npz").write_bytes(b"")
    write_json(run.folder / "config.json", dataclasses.asdict(run.config))
    write_jsonl(run.folder / "metrics.jsonl", [{"epoch": i + 1, "seconds": s, "seconds_with_eval": s + 0.5,
                                                **({} if valid is None else {"valid_elbo": valid[i], "lr": 0.5 ** i})}
                                               for i, s in enumerate(seconds)])
    if len(seconds) == run.config.epochs:
        write_json(run.folder / "summary.json", {"epochs": len(seconds), "stopped_early": False, "best_epoch": 1})
    if result is not None:
        fake_evaluation(run, settings, **result)


def test_mean_and_sample_std_over_seeds():
    stat = mean_std([1.0, 2.0, 4.0])
    assert stat["n_seeds"] == 3 and stat["mean"] == pytest.approx(7 / 3)
    # sum of squared deviations (16 + 1 + 25) / 9, over n - 1 = 2
    assert stat["std"] == pytest.approx(math.sqrt(42 / 9 / 2))
    assert mean_std([5.0]) == {"mean": 5.0, "std": None, "n_seeds": 1}
    assert mean_std([]) == {"mean": None, "std": None, "n_seeds": 0}


def test_aggregate_uses_the_rows_that_have_each_number():
    rows = [{"seed": 0, "test_elbo": -100.0, "test_log_likelihood": -95.0, "epochs": 2, "train_seconds": 4.0,
             "eval_seconds": 10.0, "iw_samples": 10, "n_test": 50, "missing": None},
            {"seed": 1, "test_elbo": None, "test_log_likelihood": None, "epochs": None, "train_seconds": None,
             "eval_seconds": None, "iw_samples": None, "n_test": None, "missing": "not trained yet"}]
    entry = aggregate(rows)
    assert entry["test_elbo"] == {"mean": -100.0, "std": None, "n_seeds": 1}
    assert entry["iw_samples"] == 10 and entry["seeds"] == [0, 1]
    assert entry["missing"] == [{"seed": 1, "reason": "not trained yet"}]


def test_the_table_against_a_hand_computation(tmp_path, capsys):
    path = write_spec(tmp_path, edit(SPEC, "seeds = [0, 1]", "seeds = [0, 1, 2]"))
    sweep = load_spec(path)
    _record_spec(sweep)
    runs = {run.id: run for run in sweep.runs}
    for seed, elbo, ll in ((0, -100.0, -95.0), (1, -102.0, -96.0), (2, -107.0, -100.0)):
        fake_run(runs[f"diagonal/seed-{seed}"], [1.0, 2.0], dict(test_elbo=elbo, test_log_likelihood=ll,
                                                               seconds=10.0 * (seed + 1)), sweep.eval)
    fake_run(runs["chain/seed-0"], [3.0, 3.0], dict(test_elbo=-99.0, test_log_likelihood=-94.0), sweep.eval)
    fake_run(runs["chain/seed-1"], [3.0])  # stopped after 1 of its 2 epochs
    write_json(sweep.out / state.FAILURES_NAME, {"chain/seed-2": {"command": "train", "returncode": 3,
                                                                "message": "gvae: training stopped", "log": "x"}})
    table = build_table(sweep, state.failures_of(sweep.out))
    diagonal, chain = table["configs"]["diagonal"], table["configs"]["chain"]
    assert diagonal["test_elbo"]["mean"] == pytest.approx(-103.0)
    assert diagonal["test_elbo"]["std"] == pytest.approx(math.sqrt((9 + 1 + 16) / 2))
    assert diagonal["test_log_likelihood"]["mean"] == pytest.approx(-97.0)
    assert diagonal["test_log_likelihood"]["std"] == pytest.approx(math.sqrt((4 + 1 + 9) / 2))
    assert diagonal["train_seconds"] == {"mean": 4.0, "std": 0.0, "n_seeds": 3}  # (1 + 0.5) + (2 + 0.5)
    assert diagonal["eval_seconds"]["mean"] == pytest.approx(20.0) and diagonal["eval_seconds"]["std"] == pytest.approx(10.0)
    assert diagonal["epochs"] == {"mean": 2.0, "std": 0.0, "n_seeds": 3} and diagonal["missing"] == []
    assert chain["test_elbo"] == {"mean": -99.0, "std": None, "n_seeds": 1}
    assert chain["train_seconds"]["n_seeds"] == 1
    assert chain["missing"] == [{"seed": 1, "reason": "training not finished (1 epochs done)"},
                                {"seed": 2, "reason": "failed: gvae train exit 3: gvae: training stopped"}]
    assert table["total_seconds"] == {"train_seconds": pytest.approx(3 * 4.0 + 7.0),
                                      "eval_seconds": pytest.approx(60.0 + 1.0)}
    assert main(["table", str(sweep.out)]) == 0
    printed = capsys.readouterr().out
    assert "| diagonal | -103.00 ± 3.61 | -97.00 ± 2.65 | 3 of 3 | 2.0 ± 0.0 | 4.0 ± 0.0 s | 20.0 ± 10.0 s |" in printed
    assert "| chain | -99.00 | -94.00 | 1 of 3 |" in printed
    assert "- chain/seed-1: training not finished" in printed and "K = 10 on 50 test images" in printed
    assert (sweep.out / "table.md").read_text() == printed
    assert json.loads((sweep.out / "table.json").read_text())["configs"]["chain"]["missing"] == chain["missing"]
    # An evaluation made before the run's last training is out of date, not a result.
    write_json(runs["chain/seed-0"].folder / "summary.json", {"epochs": 2, "stopped_early": False, "best_epoch": 2})
    table, _ = write_table(sweep.out)
    assert table["configs"]["chain"]["test_elbo"]["n_seeds"] == 0
    assert "evaluated before its last training" in table["configs"]["chain"]["missing"][0]["reason"]


def test_the_curves_are_every_run_s_validation_elbo_per_epoch(tmp_path, capsys):
    sweep = load_spec(write_spec(tmp_path, SPEC))
    _record_spec(sweep)
    runs = {run.id: run for run in sweep.runs}
    fake_run(runs["diagonal/seed-0"], [1.0, 1.0], valid=[-120.0, -110.0])
    fake_run(runs["chain/seed-1"], [1.0], valid=[-115.0])
    fake_run(runs["chain/seed-0"], [1.0])  # an epoch without validation (an old format) is not a point
    assert curves(sweep) == {"diagonal": [(0, [1, 2], [-120.0, -110.0], [1.0, 0.5])],
                             "chain": [(1, [1], [-115.0], [1.0])]}
    pytest.importorskip("matplotlib")
    assert main(["table", str(sweep.out)]) == 0
    assert f"wrote {sweep.out / 'curves.png'}" in capsys.readouterr().out
    assert (sweep.out / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_table_of_a_folder_without_a_sweep(tmp_path, capsys):
    assert main(["table", str(tmp_path)]) == 2
    assert "holds no sweep" in capsys.readouterr().err


# 4. Processes: a run stops when the worker that started it dies; a sweep killed mid-way and resumed

def wait_for(condition, timeout, what):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def lock_is_free(folder):
    try:
        with rundir.folder_lock(folder):
            return True
    except rundir.RunFolderError:
        return False


def environment():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
@pytest.mark.parametrize("sigint", ["default", "ignored"])  # ignored: started by `gvae sweep ... &` in a script
def test_a_run_stops_resumably_when_its_parent_dies(tmp_path, data_file, sigint):
    out = tmp_path / "run"
    args = ["train", "--data", str(data_file), "--limit", "80", "--latent", "3", "--hidden", "8", "--batch-size",
            "20", "--epochs", "100000", "--quiet", "--threads", "1", "--out", str(out)]
    parent = ("import os, subprocess, sys; p = subprocess.Popen([sys.executable, '-m', 'gvae.sweep_child', "
              "str(os.getpid()), *sys.argv[1:]]); print(p.pid, flush=True); p.wait()")
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint == "ignored" else None
    proc = subprocess.Popen([sys.executable, "-c", parent, *args], stdout=subprocess.PIPE, text=True,
                            env=environment(), cwd=tmp_path, preexec_fn=ignore)
    proc.stdout.readline()
    wait_for(lambda: (out / "checkpoint.npz").is_file(), 120, "the first epoch")
    proc.kill()
    proc.wait()
    wait_for(lambda: lock_is_free(out), 30, "the orphaned run to stop")
    epochs = len((out / "metrics.jsonl").read_text().splitlines())
    assert 1 <= epochs < 100000
    assert state.training(out, TrainConfig(epochs=100000)).state == "unfinished"  # resumable, not finished


@pytest.mark.slow
def test_sigterm_stops_a_sweep_as_ctrl_c_does(tmp_path, data_file):
    # kill, a batch system's time limit: the driver closes its cluster, its runs stop resumably, and the
    # user is told how to go on (SIGTERM's default ended the driver at once, in silence).
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'gvae[dask]')")
    spec = write_spec(tmp_path, edit(edit(SPEC, "tiny.npz", str(data_file)), "epochs = 2", "epochs = 100000"))
    out = tmp_path / "sweep"
    proc = sweep_process(spec, out)
    try:
        wait_for(lambda: any((out / run.id / "checkpoint.npz").is_file() for run in load_spec(spec).runs)
                 or proc.poll() is not None, 300, "a run's first epoch")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 143, err
    assert "gvae: stopped by SIGTERM; the same gvae sweep command goes on from where the sweep stopped" in err
    for run in load_spec(spec).runs:
        wait_for(lambda: not (out / run.id).is_dir() or lock_is_free(out / run.id), 60, f"{run.id} to stop")
        if (out / run.id / "checkpoint.npz").is_file():
            assert state.training(out / run.id, TrainConfig(epochs=100000)).state == "unfinished"


def strip_times(table):
    """A table without what differs between equal sweeps: times and the folder's name."""
    table = json.loads(json.dumps(table))
    for entry in table["configs"].values():
        del entry["train_seconds"], entry["eval_seconds"]
    del table["total_seconds"], table["sweep"]
    return table


def sweep_process(spec, out):
    return subprocess.Popen([sys.executable, "-m", "gvae.cli", "sweep", str(spec), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
                            start_new_session=True)


@pytest.mark.slow
def test_a_sweep_killed_midway_and_resumed_gives_the_table_of_an_uninterrupted_one(tmp_path, data_file):
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'gvae[dask]')")
    # 30 epochs: long enough to be killed while training (most of a tiny run is starting its processes).
    spec = write_spec(tmp_path, edit(edit(SPEC, "tiny.npz", str(data_file)), "epochs = 2", "epochs = 30"))
    runs = load_spec(spec).runs

    killed = tmp_path / "killed"
    proc = sweep_process(spec, killed)
    evaluated = lambda: [run for run in runs if (killed / run.id / state.EVAL_RECORD).is_file()]  # noqa: E731
    training = lambda: [run for run in runs if (killed / run.id / "checkpoint.npz").is_file()  # noqa: E731
                        and not (killed / run.id / "summary.json").is_file()]
    try:
        # Killed when one run is evaluated and another is between its epochs.
        wait_for(lambda: evaluated() and training() or proc.poll() is not None, 300, "a run finished and one training")
        proc.send_signal(signal.SIGKILL)  # the sweep's driver only: its workers and their runs are left
        proc.communicate()
        for run in runs:  # the workers die with their driver, and each run with its worker
            wait_for(lambda: not (killed / run.id).is_dir() or lock_is_free(killed / run.id), 60,
                     f"{run.id} to stop")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    finished_before = len(evaluated())
    assert 1 <= finished_before < len(runs), "the sweep was not killed mid-way"
    assert not (killed / "table.json").exists()

    resumed = subprocess.run([sys.executable, "-m", "gvae.cli", "sweep", str(spec), "--out", str(killed)],
                             capture_output=True, text=True, env=environment(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("done   ") == len(runs) - finished_before  # the finished runs are skipped
    whole = subprocess.run([sys.executable, "-m", "gvae.cli", "sweep", str(spec), "--out", str(tmp_path / "whole")],
                           capture_output=True, text=True, env=environment(), timeout=300)
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.count("done   ") == len(runs)
    tables = [json.loads((folder / "table.json").read_text()) for folder in (killed, tmp_path / "whole")]
    assert strip_times(tables[0]) == strip_times(tables[1])
    assert all(c["test_log_likelihood"]["n_seeds"] == 2 for c in tables[0]["configs"].values())

    # The same sweep with a configuration that fails: the others are kept, the failure is reported,
    # recorded and listed, and the exit status says so.
    failing = write_spec(tmp_path, edit(spec.read_text(), "[eval]",
                                        '[[configs]]\nname = "bad"\nlr = 1e12\nmax_bad_steps = 1\n[eval]'),
                         "failing.toml")
    again = subprocess.run([sys.executable, "-m", "gvae.cli", "sweep", str(failing), "--out", str(killed)],
                           capture_output=True, text=True, env=environment(), timeout=300)
    assert again.returncode == 3, again.stderr
    assert "4 trained, 0 to resume, 2 to start" in again.stdout
    assert again.stdout.count("FAILED bad/seed-") == 2 and "lower learning rate" in again.stdout
    assert "2 of 6 runs failed" in again.stderr
    failures = state.failures_of(killed)
    assert sorted(failures) == ["bad/seed-0", "bad/seed-1"] and failures["bad/seed-0"]["returncode"] == 3
    table = json.loads((killed / "table.json").read_text())
    assert strip_times(table)["configs"]["chain"] == strip_times(tables[1])["configs"]["chain"]
    assert [m["reason"].startswith("failed: gvae train exit 3") for m in table["configs"]["bad"]["missing"]] == [True] * 2
    assert (killed / "sweep.1.toml").read_text() == spec.read_text()  # the spec it replaced is kept


def test_a_run_imports_the_installed_gvae_not_one_in_the_working_directory(tmp_path, monkeypatch):
    """A gvae/ folder in the sweep's working directory (planted, or a checkout's parent) is never imported
    by the runs: python -m would put the working directory first on the import path."""
    from gvae.sweep.execute import _run_command
    planted = tmp_path / "gvae" / "sweep"
    planted.mkdir(parents=True)
    marker = tmp_path / "planted-code-ran"
    for init in (tmp_path / "gvae" / "__init__.py", planted / "__init__.py"):
        init.write_text(f"open({str(marker)!r}, 'w').close()\n")
    (planted / "child.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    code, last = _run_command(["--version"], tmp_path / "log.txt")
    assert code == 0 and last.startswith("gvae ") and not marker.exists()


@pytest.fixture
def odd_server():
    """A TCP server on 127.0.0.1 that never answers ("silent") or answers in another protocol
    ("garbage"); yields a function mode -> "host:port". It stops by itself after 30 s at most."""
    import socket
    import threading
    servers = []

    def start(mode):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        srv.settimeout(30)
        servers.append(srv)

        def serve():
            held = []
            try:
                while True:
                    conn, _ = srv.accept()
                    held.append(conn)
                    if mode == "garbage":
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" * 4)
            except OSError:
                pass
            finally:
                for conn in held:
                    conn.close()
        threading.Thread(target=serve, daemon=True).start()
        return "127.0.0.1:%d" % srv.getsockname()[1]
    yield start
    for srv in servers:
        srv.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode, message", [("silent", "no Dask scheduler answered at"),
                                           ("garbage", "does not answer as a Dask scheduler")])
def test_a_scheduler_address_of_another_server_is_one_line_in_bounded_time(tmp_path, data_file, capsys, monkeypatch,
                                                                          odd_server, mode, message):
    pytest.importorskip("distributed")
    from gvae.sweep import execute
    monkeypatch.setattr(execute, "CONNECT_SECONDS", 2)
    start = time.monotonic()
    rc = main(["sweep", str(write_spec(tmp_path, edit(SPEC, "tiny.npz", str(data_file)))), "--scheduler",
               odd_server(mode)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1 and time.monotonic() - start < 20


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"address": 7}', '{"id": "x"}'])
def test_a_scheduler_file_that_is_not_one_is_named(tmp_path, data_file, capsys, content):
    pytest.importorskip("distributed")
    path = tmp_path / "scheduler.json"
    path.write_text(content)
    rc = main(["sweep", str(write_spec(tmp_path, edit(SPEC, "tiny.npz", str(data_file)))), "--scheduler", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{path} is not a Dask scheduler file" in err and err.count("\n") == 1


@pytest.mark.parametrize("damage", ["metrics", "summary", "config"])
def test_a_damaged_run_is_named_and_the_others_go_on(tmp_path, capsys, damage):
    """One run whose metrics.jsonl, summary.json or config.json is damaged: gvae table still tables the
    others and gives the damaged one's reason naming the file; the sweep's plan leaves it as it is and
    plans the others."""
    path = write_spec(tmp_path, SPEC)
    sweep = load_spec(path)
    _record_spec(sweep)
    runs = {run.id: run for run in sweep.runs}
    for run_id in ("diagonal/seed-0", "diagonal/seed-1"):
        fit(runs[run_id])
        fake_evaluation(runs[run_id], sweep.eval, test_elbo=-100.0)
    broken = runs["diagonal/seed-1"].folder
    if damage == "metrics":
        (broken / "metrics.jsonl").write_bytes(b'{"epoch": 1}\n\xff\xfe not text\n')
    elif damage == "summary":
        (broken / "summary.json").write_text("{not json")
    else:
        (broken / "checkpoint.npz").unlink()  # the configuration is then read from config.json
        (broken / "config.json").write_text("[1, 2")
    named = {"metrics": "metrics.jsonl", "summary": "summary.json", "config": "config.json"}[damage]
    jobs, _, damaged = plan(sweep)
    assert list(damaged) == ["diagonal/seed-1"] and named in damaged["diagonal/seed-1"]
    assert "diagonal/seed-1" not in {job.id for job in jobs} and "chain/seed-0" in {job.id for job in jobs}
    if damage != "config":  # without a checkpoint but with its summary the table reads it as kept results
        table = build_table(sweep, {})
        assert table["configs"]["diagonal"]["test_elbo"]["n_seeds"] == 1
        [missing] = table["configs"]["diagonal"]["missing"]
        assert missing["seed"] == 1 and missing["reason"].startswith("damaged: ") and named in missing["reason"]
    assert main(["table", str(sweep.out)]) == 0
    capsys.readouterr()


def test_the_sweep_bar_counts_epochs_from_the_runs_folders(tmp_path):
    """The bar of gvae sweep moves by epochs the runs write to their metrics (each run trains --quiet in a
    process of its own): a finished run counts all its epochs (also when its patience stopped it), an
    unfinished one the epochs it has, a damaged one none; the watcher thread follows the files."""
    from tqdm import tqdm

    from gvae.sweep import execute
    sweep = load_spec(write_spec(tmp_path, edit(SPEC, "seeds = [0, 1]", "seeds = [0, 1, 2]")))
    _record_spec(sweep)
    runs = {run.id: run for run in sweep.runs}
    assert execute.epochs_done(sweep) == 0
    fake_run(runs["diagonal/seed-0"], [1.0, 1.0])
    fake_run(runs["diagonal/seed-1"], [1.0])
    fake_run(runs["chain/seed-0"], [1.0])
    write_json(runs["chain/seed-0"].folder / "summary.json", {"epochs": 1, "stopped_early": True, "best_epoch": 0})
    fake_run(runs["chain/seed-1"], [1.0])
    (runs["chain/seed-1"].folder / "metrics.jsonl").write_text("{not json\n")
    assert execute.epochs_done(sweep) == 2 + 1 + 2 + 0
    import io
    bar = tqdm(total=12, initial=5, file=io.StringIO())
    ended = threading.Event()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(execute, "FOLLOW_SECONDS", 0.01)
        watcher = threading.Thread(target=execute._follow_epochs, args=(sweep, bar, ended))
        watcher.start()
        write_jsonl(runs["chain/seed-1"].folder / "metrics.jsonl", [{"epoch": 1, "seconds": 1.0}])
        wait_for(lambda: bar.n == 6, 10, "the bar to follow the new epoch")
        ended.set()
        watcher.join(timeout=10)
    assert not watcher.is_alive()
