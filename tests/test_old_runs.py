"""Runs written before the tasks moved into gvae.models and their options out of TrainConfig still load,
evaluate and resume bit for bit.

tests/data/old_runs holds one-epoch runs of six tasks (float32, --latent 2 --hidden 4, on the 20 training
images of data.npz) that gvae train wrote at commit ff47217, whose config.json lists every setting flat,
other tasks' included. expected.json holds, per run, the SHA-256 of every checkpoint array and the metrics
rows (less their timings) of the same configuration trained for two epochs in one go by that code: the
checkpoint must match bit for bit, the metrics to 1e-9 of each row's largest."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import gvae.models  # noqa: F401  (registers the literature models' tasks)
from gvae.cli import main
from gvae.io.files import read_jsonl
from gvae.training import checkpoint, load_model

OLD = Path(__file__).parent / "data" / "old_runs"
EXPECTED = json.loads((OLD / "expected.json").read_text())
RUNS = sorted(EXPECTED)
# The settings added after ff47217, with the defaults an old run takes.
ADDED = {"view2_mean": "linear"}


def test_every_kept_run_is_checked():
    assert RUNS == sorted(p.name for p in OLD.iterdir() if p.is_dir())
    assert {"generate", "classify", "vcca", "darn", "gammadef", "mae"} <= set(RUNS)


@pytest.mark.parametrize("name", RUNS)
def test_an_old_run_loads_with_its_task_options(name):
    model, params, config = load_model(OLD / name)
    flat = json.loads((OLD / name / "config.json").read_text())
    assert config.task == flat["task"] and config.layer_sizes() == (2,)
    assert params and all(np.isfinite(np.asarray(p)).all() for p in params.values())
    # The settings of other tasks are gone; those added since ff47217 are there, at their defaults.
    added = set(config.flat()) - set(flat)
    assert added <= set(ADDED) and all(config.flat()[name] == ADDED[name] for name in added)
    if name == "vcca":  # a task's own settings, changed from their defaults, are its options
        assert config.options.private == 1 and config.options.view_weight == 2.0


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNS)
def test_an_old_run_resumes_bit_for_bit(tmp_path, name):
    run = tmp_path / name
    shutil.copytree(OLD / name, run)
    assert main(["train", "--resume", "--out", str(run), "--data", str(OLD / "data.npz"), "--epochs", "2",
                 "--quiet"]) == 0
    arrays, _ = checkpoint.load(run / "checkpoint.npz")
    got = {k: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for k, a in sorted(arrays.items())}
    assert got == EXPECTED[name]["checkpoint_sha256"]
    rows = [{k: v for k, v in r.items() if not k.startswith("seconds") and k != "resumed_with"}
            for r in read_jsonl(run / "metrics.jsonl")]
    expected = EXPECTED[name]["metrics"]
    assert [sorted(r) for r in rows] == [sorted(r) for r in expected]
    # The state above is bit for bit; the reported averages are sums of float32 values whose rounding a
    # change of a kernel's summation may move (the Bernoulli log-likelihood's logs taken as one product
    # moved DARN's sampled KL, a difference of log-densities of some 500 nats, by 3.5e-8), so each is
    # compared to 1e-9 of the row's largest value.
    for got_row, want_row in zip(rows, expected):
        scale = max(abs(v) for v in want_row.values() if isinstance(v, float))
        for k, want in want_row.items():
            if isinstance(want, float):
                assert abs(got_row[k] - want) <= 1e-9 * scale, (k, got_row[k], want)
            else:
                assert got_row[k] == want, k


@pytest.mark.slow
@pytest.mark.parametrize("name", ["generate", "darn"])
def test_an_old_run_evaluates(tmp_path, name, capsys):
    run = tmp_path / name
    shutil.copytree(OLD / name, run)
    assert main(["eval", str(run), "--data", str(OLD / "data.npz"), "--iw-samples", "2", "--limit", "3"]) == 0
    assert "log p(x)" in capsys.readouterr().out
