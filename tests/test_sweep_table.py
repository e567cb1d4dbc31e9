"""gvae table: the mean and standard deviation over seeds, the aggregate of what each run holds, the table
against a hand computation, and the validation curves."""
import json
import math

import pytest

from gvae.cli import main
from gvae.io.files import write_json
from gvae.sweep import state
from gvae.sweep.execute import _record_spec
from gvae.sweep.spec import load_spec
from gvae.sweep.table import aggregate, build_table, curves, mean_std, write_table
from tests.sweep_helpers import SPEC, write_spec, edit, fake_run


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
