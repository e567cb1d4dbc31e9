"""Runs written before the tasks moved into gvae.models and their options out of TrainConfig still load,
evaluate and resume as the code that wrote them did: bit for bit on the CPUs whose bits are kept.

tests/data/old_runs holds one-epoch runs of six tasks (float32, --latent 2 --hidden 4, on the 20 training
images of data.npz) that gvae train wrote at commit ff47217, whose config.json lists every setting flat,
other tasks' included. expected.json holds, per run, the metrics rows (less their timings) of the same
configuration trained for two epochs in one go by that code, which the resumed run must match to 1e-9 of
each row's largest on any machine; and, per CPU (vendor, family and model, as /proc/cpuinfo names them),
the SHA-256 of every checkpoint array that code's run ended with there, which the resumed run must match
bit for bit on that CPU. The bits are a CPU's own: its BLAS and Numba's code for it sum float32 products
in their own order, so two CPUs' checkpoints differ in their last bits after one step. The Intel Xeon's
(family 6, model 167) are the two-epoch run of 2026-11-28 there; the AMD EPYC Zen 3's (family 25, model 1)
are the kept runs resumed by ff47217's own code on that CPU (2026-11-29, NumPy 2.4's OpenBLAS 0.3.31), as
``python tools/old_run_bits.py --write`` adds a CPU's. On another CPU the metrics are compared, not the bits."""
import copy
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import gvae.models  # noqa: F401  (registers the literature models' tasks)
from gvae.cli import main
from gvae.io.files import read_jsonl
from gvae.training import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from old_run_bits import checkpoint_bits, disagreement, rows, this_cpu  # noqa: E402

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


def test_each_kept_checkpoint_names_its_cpu_and_every_array():
    """Every run has the bits of the same CPUs, each key in this_cpu()'s form (a key it could not write
    would never be compared), each with every array (tools/old_run_bits.py adds a CPU's)."""
    form = r"\S+ family \d+ model \d+"
    cpu = this_cpu()
    assert cpu is None or re.fullmatch(form, cpu), cpu
    cpus = set(EXPECTED[RUNS[0]]["checkpoint_sha256"])
    assert {"GenuineIntel family 6 model 167", "AuthenticAMD family 25 model 1"} <= cpus
    for name in RUNS:
        by_cpu = EXPECTED[name]["checkpoint_sha256"]
        assert set(by_cpu) == cpus and all(re.fullmatch(form, key) for key in by_cpu)
        assert all(sorted(h) == ["adam_m", "adam_step", "adam_v", "best_params", "params"] for h in by_cpu.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNS)
def test_an_old_run_resumes_as_that_code_did(tmp_path, name):
    run = tmp_path / name
    shutil.copytree(OLD / name, run)
    assert main(["train", "--resume", "--out", str(run), "--data", str(OLD / "data.npz"), "--epochs", "2",
                 "--quiet"]) == 0
    kept = EXPECTED[name]["checkpoint_sha256"].get(this_cpu())
    if kept is not None:
        assert checkpoint_bits(run / "checkpoint.npz") == kept
    # The metrics' averages are sums of float32 values whose rounding a change of a kernel's summation may
    # move (the Bernoulli log-likelihood's logs taken as one product moved DARN's sampled KL, a difference
    # of log-densities of some 500 nats, by 3.5e-8), and another CPU's order of summing moves them alike
    # (2e-10 of the row's largest on the Zen 3): each is compared to 1e-9 of the row's largest value.
    assert disagreement(rows(read_jsonl(run / "metrics.jsonl")), EXPECTED[name]["metrics"]) is None


def test_metrics_disagree_where_a_value_moves_past_the_tolerance():
    want = EXPECTED["vcca"]["metrics"]
    assert disagreement(copy.deepcopy(want), want) is None
    near, far, other = (copy.deepcopy(want) for _ in range(3))
    near[1]["train_bound"] *= 1 + 5e-10  # within 1e-9 of the row's largest, |valid_elbo|
    far[1]["valid_elbo"] += 2e-9 * abs(want[1]["train_bound"])
    other[0]["skipped_steps"] = 1
    assert disagreement(near, want) is None
    assert "valid_elbo" in disagreement(far, want) and "skipped_steps" in disagreement(other, want)
    assert "keys" in disagreement([{**want[0], "extra": 1.0}, want[1]], want)
    assert "keys" in disagreement(want[:1], want)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["generate", "darn"])
def test_an_old_run_evaluates(tmp_path, name, capsys):
    run = tmp_path / name
    shutil.copytree(OLD / name, run)
    assert main(["eval", str(run), "--data", str(OLD / "data.npz"), "--iw-samples", "2", "--limit", "3"]) == 0
    assert "log p(x)" in capsys.readouterr().out
