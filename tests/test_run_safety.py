"""Runs are never lost or silently wrong: each finding of the hostile-user review, kept as a test.

Existing runs are refused unless resumed or overwritten; one run folder has one writer; a resumed run
keeps its own configuration and data; a diverged run stops with a non-zero exit and leaves a healthy,
resumable checkpoint; damaged files give one clear line; Ctrl-C and SIGTERM exit with a resume hint."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from gvae.cli import main
from gvae.training import DivergedError, NonFiniteError, TrainConfig, Trainer, checkpoint, rundir
from tests.sweep_helpers import environment, wait_for
from tests.helpers import make_data, write_data

SMALL = ["--limit", "80", "--latent", "3", "--hidden", "8", "--batch-size", "20", "--quiet"]


def train(data_file, out, *extra):
    return main(["train", "--data", str(data_file), *SMALL, "--out", str(out), *extra])


def lines(capsys):
    return capsys.readouterr().err.strip().splitlines()


# 1. Existing runs and concurrent writers

def test_an_existing_run_is_refused_unless_resumed_or_overwritten(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    before = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert train(data_file, out, "--epochs", "1", "--seed", "3") == 2
    err = lines(capsys)
    assert len(err) == 1 and "already holds a run" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]
    assert (out / "checkpoint.npz").read_bytes() == before
    assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", "2", "--quiet"]) == 0
    (out / "notes.txt").write_text("the user's own file")
    assert train(data_file, out, "--epochs", "1", "--seed", "3", "--overwrite") == 0
    assert json.loads((out / "config.json").read_text())["seed"] == 3
    assert not list(out.glob("eval*.json"))  # evaluations of the replaced run went with it
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert (out / "checkpoint.npz").read_bytes() != before


def test_a_run_folder_has_one_writer(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    with rundir.writer(out):  # another process holds the folder (flock conflicts across open files too)
        assert train(data_file, out, "--epochs", "1") == 2
        err = lines(capsys)
        assert len(err) == 1 and "being written by another gvae process" in err[0]
    assert not (out / "checkpoint.npz").exists()
    assert train(data_file, out, "--epochs", "1") == 0  # the lock went with its holder


def test_the_python_api_refuses_an_existing_run_too(tmp_path):
    data = make_data()
    config = TrainConfig(latent=2, hidden=(8,), epochs=1, batch_size=50, limit=100)
    Trainer(config, data, tmp_path / "run", progress=False, quiet=True).fit()
    with pytest.raises(rundir.RunFolderError, match="already holds a run"):
        Trainer(config, data, tmp_path / "run", progress=False, quiet=True).fit()


# 2. Resume keeps the run's configuration and data

def test_resume_refuses_flags_that_differ_from_the_run(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    capsys.readouterr()
    rc = main(["train", "--resume", "--data", str(data_file), "--out", str(out), "--posterior", "chain",
               "--hidden", "200", "200", "--latent", "8", "--lr", "0.0005", "--quiet"])
    assert rc == 2
    err = lines(capsys)
    assert len(err) == 1
    for flag in ("--posterior chain (the run's: diagonal)", "--hidden [200, 200]", "--latent 8 (the run's: 3)"):
        assert flag in err[0]
    assert "--lr" not in err[0].split("Only")[0]  # --lr may change


def test_resume_without_epochs_runs_to_the_runs_own_count(tmp_path, data_file):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "3") == 0
    ck, meta = checkpoint.load(out / "checkpoint.npz")
    assert main(["train", "--resume", "--data", str(data_file), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["epochs"] == 3
    assert checkpoint.load(out / "checkpoint.npz")[1]["epoch"] == 3


def test_resume_with_a_new_rate_records_it(tmp_path, data_file):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    assert main(["train", "--resume", "--data", str(data_file), "--out", str(out), "--epochs", "2",
                 "--lr", "0.0005", "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["resumed_with"] == {"epochs": 2, "lr": 0.0005} and rows[1]["lr"] == 0.0005
    assert "resumed_with" not in rows[0]


def test_resume_refuses_other_data(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    path = write_data(tmp_path / "other.npz", seed=9)
    capsys.readouterr()
    assert main(["train", "--resume", "--data", str(path), "--out", str(out), "--epochs", "2", "--quiet"]) == 2
    assert "trained on other data" in lines(capsys)[0]


# 3. Divergence

def test_a_diverging_run_stops_and_its_named_checkpoint_resumes_with_a_lower_rate(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    healthy = checkpoint.load(out / "checkpoint.npz")[0]["params"]
    capsys.readouterr()
    rc = main(["train", "--resume", "--data", str(data_file), "--out", str(out), "--epochs", "3", "--lr", "1e4",
               "--quiet"])
    assert rc == 3
    err = " ".join(lines(capsys))
    assert ("diverged" in err or "non-finite" in err) and "epoch 1" in err and "--lr" in err
    arrays, meta = checkpoint.load(out / "checkpoint.npz")
    assert meta["epoch"] == 1 and np.isfinite(arrays["params"]).all()
    np.testing.assert_array_equal(arrays["params"], healthy)
    assert main(["train", "--resume", "--data", str(data_file), "--out", str(out), "--epochs", "2", "--lr", "1e-4",
                 "--quiet"]) == 0
    assert checkpoint.load(out / "checkpoint.npz")[1]["epoch"] == 2


def test_an_epoch_of_only_skipped_steps_stops_the_run(tmp_path):
    config = TrainConfig(latent=2, hidden=(8,), epochs=2, batch_size=50, limit=100, max_bad_steps=50)
    trainer = Trainer(config, make_data(), tmp_path / "run", progress=False, quiet=True)
    trainer.step = lambda x, kl_weight, y=None: None  # every step non-finite, fewer than max_bad_steps in all
    with pytest.raises(NonFiniteError, match="every step of epoch 1 .*no epoch finished"):
        trainer.fit()
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_a_collapsed_validation_elbo_is_divergence(tmp_path):
    config = TrainConfig(latent=2, hidden=(8,), epochs=2, batch_size=50, limit=100)
    trainer = Trainer(config, make_data(), tmp_path / "run", progress=False, quiet=True)
    trainer.validate = lambda: {"valid_elbo": -1e7 if trainer.state.epoch else -50.0}  # untrained: -50 nats
    with pytest.raises(DivergedError, match="fell to -1e\\+07, far below the untrained model's -50"):
        trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["valid_elbo"] == -1e7 and not (tmp_path / "run" / "checkpoint.npz").exists()


# 4. Damaged files, leftovers, Ctrl-C

@pytest.mark.parametrize("command", ["eval", "sample", "plot", "resume"])
def test_a_truncated_checkpoint_is_one_clear_line(tmp_path, data_file, capsys, command):
    if command == "plot":
        pytest.importorskip("matplotlib")  # without it gvae plot stops first, saying so
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    path = out / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:500])
    capsys.readouterr()
    argv = {"eval": ["eval", str(out), "--data", str(data_file), "--iw-samples", "2", "--quiet"],
            "sample": ["sample", str(out)], "plot": ["plot", str(out), "--data", str(data_file)],
            "resume": ["train", "--resume", "--data", str(data_file), "--out", str(out), "--quiet"]}[command]
    assert main(argv) == 2
    err = lines(capsys)
    assert len(err) == 1 and "damaged or truncated" in err[0] and str(path) in err[0]


def test_missing_meta_keys_and_nan_parameters_are_named(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    arrays, meta = checkpoint.load(out / "checkpoint.npz")
    checkpoint.save(out / "checkpoint.npz", arrays, {k: v for k, v in meta.items()
                                                      if k not in ("param_shapes", "format", "version")})
    capsys.readouterr()
    assert main(["sample", str(out)]) == 2
    assert "lacks param_shapes" in lines(capsys)[0]
    arrays["best_params"][3] = np.nan
    checkpoint.save(out / "checkpoint.npz", arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", "2", "--quiet"]) == 2
    assert "hold NaN or inf" in lines(capsys)[0]
    assert not (out / "eval.json").exists()


def test_leftovers_of_a_killed_write_are_removed_at_the_next_start(tmp_path, data_file):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    (out / ".checkpoint.npz.x1y2.tmp.npz").write_bytes(b"half a checkpoint")
    assert main(["train", "--resume", "--data", str(data_file), "--out", str(out), "--epochs", "2", "--quiet"]) == 0
    assert not list(out.glob(".*.tmp*"))


def test_ctrl_c_exits_with_one_line_and_a_resume_hint(tmp_path, data_file, capsys, monkeypatch):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0

    def interrupted(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "run_epoch", interrupted)
    capsys.readouterr()
    assert main(["train", "--resume", "--data", str(data_file), "--out", str(out), "--epochs", "3", "--quiet"]) == 130
    err = lines(capsys)
    assert len(err) == 1 and f"gvae train --resume --out {out}" in err[0]


@pytest.mark.slow
def test_sigterm_stops_training_as_ctrl_c_does(tmp_path, data_file):
    # kill, a batch system's time limit, docker stop: the last finished epoch stays resumable, the lock
    # is released and the user told how to go on, exit status 128 + 15.
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "gvae.cli", "train", "--data", str(data_file), *SMALL,
                             "--epochs", "100000", "--threads", "1", "--out", str(out)],
                            stderr=subprocess.PIPE, text=True, env=environment())
    try:
        wait_for(lambda: (out / "checkpoint.npz").is_file() or proc.poll() is not None, 120, "the first epoch")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == (f"gvae: stopped by SIGTERM; the run resumes from its last finished "
                                            f"epoch: gvae train --resume --out {out}")
    done = len((out / "metrics.jsonl").read_text().splitlines())
    assert train(data_file, out, "--resume", "--epochs", str(done + 1)) == 0


def test_sigterm_is_left_as_it_was_after_a_command(tmp_path, data_file):
    before = signal.getsignal(signal.SIGTERM)
    assert train(data_file, tmp_path / "run", "--epochs", "1") == 0
    assert signal.getsignal(signal.SIGTERM) is before


# 5. Where things are written

@pytest.mark.parametrize("out, message", [("", "must be a non-empty path"), ("FILE", "is not a folder"),
                                          ("/proc/gvae-run", "cannot write the run folder")])
def test_bad_out_is_one_clear_line(tmp_path, data_file, capsys, out, message):
    if out == "FILE":
        out = tmp_path / "a-file"
        out.write_text("x")
    assert main(["train", "--data", str(data_file), *SMALL, "--epochs", "1", "--out", str(out)]) == 2
    err = lines(capsys)
    assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize("name, message", [("DIR", "is a folder"), ("x.txt", "ending in .npz or .csv"),
                                           ("missing/x.csv", "does not exist")])
def test_a_bad_per_example_path_is_refused_before_the_evaluation(tmp_path, data_file, capsys, name, message):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    target = tmp_path if name == "DIR" else tmp_path / name
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", "2", "--quiet",
                 "--per-example", str(target)]) == 2
    assert message in lines(capsys)[0] and not (out / "eval.json").exists()


def test_an_evaluation_with_another_k_does_not_replace_the_first(tmp_path, data_file):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    for k in ("4", "2"):
        assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", k, "--quiet"]) == 0
    assert json.loads((out / "eval_k4.json").read_text())["iw_samples"] == 4
    assert json.loads((out / "eval_k2.json").read_text())["iw_samples"] == 2
    assert json.loads((out / "eval.json").read_text())["iw_samples"] == 2


def test_an_evaluation_stopped_by_sigterm_goes_on_where_it_stopped(tmp_path, data_file, capsys, monkeypatch):
    import gvae.evaluation.evaluate as ev
    from gvae.commands import Terminated
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    # One thread: one batch at a time, one pass each, so that the third pass is in the third batch (on more
    # threads batches run side by side: tests/test_eval_side_by_side.py).
    argv = ["eval", str(out), "--data", str(data_file), "--iw-samples", "20", "--batch-size", "10", "--quiet",
            "--threads", "1"]
    assert main(argv) == 0
    whole = json.loads((out / "eval.json").read_text())
    real, calls = ev.log_ratio, []

    def stopped_in_the_third_batch(*args):
        calls.append(1)
        if len(calls) == 3:
            raise Terminated
        return real(*args)

    monkeypatch.setattr(ev, "SAVE_SECONDS", 0.0)
    monkeypatch.setattr(ev, "log_ratio", stopped_in_the_third_batch)
    (out / "eval.json").unlink()
    capsys.readouterr()
    assert main(argv) == 143
    assert lines(capsys)[-1] == "gvae: stopped by SIGTERM; the same gvae eval command goes on from the images it finished"
    assert (out / "eval_k20.partial.npz").is_file() and not (out / "eval.json").exists()
    monkeypatch.setattr(ev, "log_ratio", real)
    assert main(argv) == 0
    resumed = json.loads((out / "eval.json").read_text())
    assert {k: v for k, v in resumed.items() if k not in ("seconds", "peak_rss_mb")} == \
        {k: v for k, v in whole.items() if k not in ("seconds", "peak_rss_mb")}
    assert not list(out.glob("*partial*")) and not list(out.glob(".*.tmp*"))


def test_a_run_folder_has_one_writer_whatever_the_command(tmp_path, data_file, capsys):
    # An evaluation running while gvae train --overwrite replaced the run wrote the old model's results
    # into the new run: train, eval, analyze, and sample and plot into the run folder share one lock.
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    evaluate = ["eval", str(out), "--data", str(data_file), "--iw-samples", "2", "--quiet"]
    with rundir.folder_lock(out, command="gvae eval"):  # an evaluation of the run, in progress
        capsys.readouterr()
        assert train(data_file, out, "--epochs", "1", "--overwrite") == 2
        err = lines(capsys)
        assert len(err) == 1 and "being written by another gvae process" in err[0] and "gvae eval" in err[0]
        assert main(["analyze", str(out), "--data", str(data_file), "--quiet"]) == 2
        assert "gvae eval" in lines(capsys)[0]
        for argv in (["sample", str(out)], ["plot", str(out), "--data", str(data_file)]):
            assert main(argv) == 2
            assert "being written by another gvae process" in lines(capsys)[0]
        assert main(["sample", str(out), "--n", "4", "--out", str(tmp_path / "elsewhere")]) == 0  # reads only
    with rundir.writer(out, resume=True):  # its training, in progress
        capsys.readouterr()
        assert main(evaluate) == 2
        err = lines(capsys)
        assert len(err) == 1 and f"pid {os.getpid()}: gvae train" in err[0]
    assert not (out / "eval.json").exists()
    assert main(evaluate) == 0


# 6. Resuming (issue 24): from nothing, with fewer epochs, with damaged metrics; what it prints

def killed_before_its_first_checkpoint(data_file, out, monkeypatch, capsys):
    """A run folder as gvae train leaves it when stopped in its first epoch: config.json alone."""
    def interrupted(self):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "run_epoch", interrupted)
        assert train(data_file, out, "--epochs", "2") == 130
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    return lines(capsys)


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_nothing(tmp_path, data_file, monkeypatch, capsys):
    # gvae train said "use --resume" and --resume said "start one without --resume": only --overwrite worked.
    out = tmp_path / "run"
    err = killed_before_its_first_checkpoint(data_file, out, monkeypatch, capsys)
    assert err[-1] == (f"gvae: interrupted; no epoch had finished: gvae train --resume --out {out} starts the run "
                       "over with its configuration")
    assert train(data_file, out, "--epochs", "2") == 2
    assert "continue it with --resume" in lines(capsys)[0]
    assert main(["train", "--resume", "--data", str(data_file), "--out", str(out), "--lr", "0.002"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (f"resuming {out} from epoch 0 of 2 with lr 0.002 (no epoch "
                                                       "had finished: it starts over with its configuration)")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0]["resumed_with"] == {"lr": 0.002}
    assert json.loads((out / "config.json").read_text())["latent"] == 3  # the run's own configuration
    # The same run trained without the stop: the same parameters.
    assert train(data_file, tmp_path / "whole", "--epochs", "2", "--lr", "0.002") == 0
    np.testing.assert_array_equal(checkpoint.load(out / "checkpoint.npz")[0]["params"],
                                  checkpoint.load(tmp_path / "whole" / "checkpoint.npz")[0]["params"])


def test_a_run_kept_for_its_results_is_not_resumed_from_nothing(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    (out / "checkpoint.npz").unlink()  # an archive: its summary and metrics, no checkpoint
    capsys.readouterr()
    assert train(data_file, out, "--resume", "--epochs", "2") == 2
    err = lines(capsys)
    assert len(err) == 1 and "there is no run to resume" in err[0] and "--overwrite" in err[0]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_refuses_fewer_epochs_than_the_run_has_done(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "2") == 0
    config = (out / "config.json").read_text()
    capsys.readouterr()
    assert train(data_file, out, "--resume", "--epochs", "1") == 2
    err = lines(capsys)
    assert len(err) == 1 and "has done 2 epochs, more than the 1 asked for (--epochs); give at least 2" in err[0]
    assert (out / "config.json").read_text() == config
    assert train(data_file, out, "--resume", "--epochs", "2") == 0  # as many as done: nothing to train


@pytest.mark.parametrize("damage", ["emptied", "cut short", "renumbered", "not JSON", "not UTF-8", "a folder"])
def test_resume_refuses_metrics_without_a_row_per_epoch_done(tmp_path, data_file, capsys, damage):
    # An emptied metrics.jsonl was continued silently: one line for three epochs.
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "2") == 0
    metrics = out / "metrics.jsonl"
    rows = metrics.read_text().splitlines()
    if damage == "a folder":
        metrics.unlink()
        metrics.mkdir()
    else:
        metrics.write_bytes({"emptied": b"", "cut short": rows[0].encode() + b"\n",
                             "renumbered": (rows[1] + "\n" + rows[1] + "\n").encode(),
                             "not JSON": rows[0].encode() + b"\n{\"epoch\": 2,\n",
                             "not UTF-8": b"\xff\xfe" + rows[0].encode()}[damage])
    capsys.readouterr()
    assert train(data_file, out, "--resume", "--epochs", "3") == 2
    err = lines(capsys)
    assert len(err) == 1 and str(metrics) in err[0], err
    assert checkpoint.load(out / "checkpoint.npz")[1]["epoch"] == 2


def test_resume_drops_the_metrics_of_an_epoch_its_checkpoint_lacks(tmp_path, data_file):
    # Stopped between writing an epoch's metrics and its checkpoint: the checkpoint's epochs go on.
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    row = json.loads((out / "metrics.jsonl").read_text())
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({**row, "epoch": 2, "valid_elbo": 1.0}) + "\n")
    assert train(data_file, out, "--resume", "--epochs", "2") == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["valid_elbo"] != 1.0


def test_a_resume_that_read_a_run_replaced_since_is_refused(tmp_path, data_file):
    # Trainer.resume reads the run before fit takes the folder's lock: a run replaced in between (gvae train
    # --overwrite) is not overwritten with the state of the one it replaced.
    from gvae.io.mnist import load_mnist
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    trainer = Trainer.resume(out, load_mnist(str(data_file)), progress=False, quiet=True, epochs=2)
    assert train(data_file, out, "--epochs", "1", "--seed", "5", "--overwrite") == 0
    replaced = (out / "checkpoint.npz").read_bytes()
    with pytest.raises(rundir.RunFolderError, match="was written by another gvae process after this one read"):
        trainer.fit()
    assert (out / "checkpoint.npz").read_bytes() == replaced


def test_train_says_where_it_resumes_and_quiet_keeps_the_result_line(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0  # --quiet: the result and the folder, nothing else
    summary = json.loads((out / "summary.json").read_text())
    assert capsys.readouterr().out.splitlines() == [f"test ELBO {summary['test_elbo']:.3f} nats (all {summary['n_test']} "
                                                    "test images, one draw of z each, the best epoch's parameters); "
                                                    f"run written to {out}"]
    argv = ["train", "--resume", "--data", str(data_file), "--out", str(out), "--epochs", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"resuming {out} from epoch 1 of 2 with epochs 2" and printed[1].startswith("epoch 2/2")


# 7. A run folder's files, damaged or missing, are named

@pytest.mark.parametrize("command", ["eval", "sample", "analyze", "resume"])
@pytest.mark.parametrize("what", ["no folder", "a file", "no run", "no epoch", "checkpoint folder"])
def test_a_missing_or_partial_run_is_one_line_naming_what_is_there(tmp_path, data_file, capsys, command, what):
    out = tmp_path / "run"
    if what == "a file":
        out.write_text("x")
    elif what != "no folder":
        out.mkdir()
        (out / "notes.txt").write_text("the user's")
        if what == "no epoch":
            (out / "config.json").write_text(json.dumps({"latent": 3, "hidden": [8]}))
        if what == "checkpoint folder":
            (out / "checkpoint.npz").mkdir()
    argv = {"eval": ["eval", str(out), "--data", str(data_file), "--quiet"], "sample": ["sample", str(out)],
            "analyze": ["analyze", str(out), "--data", str(data_file), "--quiet"],
            "resume": ["train", "--resume", "--data", str(data_file), "--out", str(out), "--quiet"]}[command]
    assert main(argv) == (0 if (command, what) == ("resume", "no epoch") else 2)
    err = lines(capsys)
    if (command, what) == ("resume", "no epoch"):
        return  # it trains (see above)
    expected = {"no folder": f"there is no run folder at {out}", "a file": "is not a run folder",
                "no run": f"{out} holds no gvae run (no checkpoint.npz)",
                "no epoch": f"{out} holds a run with no finished epoch", "checkpoint folder": "checkpoint.npz is a folder"}
    if command == "resume":
        expected.update({"no folder": "there is no run to resume", "no run": "there is no run to resume",
                         "a file": "exists and is not a folder"})
    assert len(err) == 1 and expected[what] in err[0], err
    assert not (tmp_path / "run" / rundir.LOCK_NAME).exists() and not (what == "no folder" and out.exists())


@pytest.mark.parametrize("name", ["eval.json", "eval_k2.json", "eval_k2.partial.npz"])
def test_an_evaluation_file_that_is_a_folder_is_named(tmp_path, data_file, capsys, name):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    (out / name).mkdir()
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", "2", "--quiet"]) == 2
    err = lines(capsys)
    assert len(err) == 1 and f"{out / name} is a folder" in err[0]


def test_overwrite_refuses_a_run_file_that_is_a_folder_before_removing_any(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    (out / "eval.json").mkdir()
    capsys.readouterr()
    assert train(data_file, out, "--epochs", "1", "--overwrite") == 2
    assert f"{out / 'eval.json'} is a folder" in lines(capsys)[0]
    assert (out / "checkpoint.npz").is_file() and (out / "summary.json").is_file()


@pytest.mark.parametrize("name", ["config.json", "summary.json", "metrics.jsonl"])
def test_a_damaged_run_file_is_named_when_it_is_read(tmp_path, data_file, capsys, name):
    pytest.importorskip("matplotlib")  # gvae plot reads all three
    out = tmp_path / "run"
    assert train(data_file, out, "--epochs", "1") == 0
    (out / name).write_bytes(b"\xff{not json")
    capsys.readouterr()
    assert main(["plot", str(out), "--data", str(data_file)]) == 2
    err = lines(capsys)
    assert len(err) == 1 and f"{out / name} is damaged" in err[0], err


def test_the_config_of_a_run_without_a_checkpoint_is_named_when_damaged(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"latent": -3}')
    assert train(data_file, out, "--resume") == 2
    err = lines(capsys)
    assert len(err) == 1 and str(out / "config.json") in err[0] and "latent" in err[0], err


def test_a_stop_that_arrives_inside_c_code_is_the_same_stop(monkeypatch, capsys, tmp_path):
    """SIGTERM or Ctrl-C while C code runs Python (Numba unpickling a cached kernel) reaches gvae as a
    SystemError caused by the handler's exception: it stops as the plain one does (seen in
    test_sigterm_stops_training_as_ctrl_c_does under load); another SystemError is not swallowed."""
    from gvae import commands

    def stopped_in_c(stop):
        def command(args):
            try:
                raise stop
            except KeyboardInterrupt as e:
                raise SystemError("<function _numba_unpickle> returned a result with an exception set") from e
        return command

    monkeypatch.setitem(commands.COMMANDS, "sample", stopped_in_c(commands.Terminated()))
    assert commands.run(["sample", str(tmp_path)]) == 143
    assert capsys.readouterr().err.strip() == "gvae: stopped by SIGTERM"
    monkeypatch.setitem(commands.COMMANDS, "sample", stopped_in_c(KeyboardInterrupt()))
    assert commands.run(["sample", str(tmp_path)]) == 130

    def broken(args):
        raise SystemError("a real one")
    monkeypatch.setitem(commands.COMMANDS, "sample", broken)
    with pytest.raises(SystemError, match="a real one"):
        commands.run(["sample", str(tmp_path)])
