"""examples/vib_table.py on generated labelled data: the runs trained (two at a time), a stopped or shorter
run resumed to the budget asked for, a finished one kept, the table's numbers those of the runs'
summaries, and missing runs listed."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from gvae.io.files import read_jsonl
from tests.test_vib import _bars

spec = importlib.util.spec_from_file_location("vib_table", Path(__file__).resolve().parents[1] / "examples" / "vib_table.py")
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


@pytest.mark.slow
def test_the_table_of_the_trained_runs(tmp_path, capsys):
    data, out = _bars(tmp_path), tmp_path / "vib"
    small = ["--out", str(out), "--data", str(data), "--latent", "4", "--hidden", "16", "--betas", "1e-3"]
    assert example.main([*small, "--families", "diagonal", "grid", "--seeds", "0", "--epochs", "1", "--jobs", "2"]) == 0
    grid = out / "grid" / "beta-0.001" / "seed-0"
    config = json.loads((grid / "config.json").read_text())
    assert (config["posterior"], config["grid_shape"], config["polyak"], config["adam_beta1"]) == ("grid", [2, 2], 0.999, 0.5)
    assert (config["lr_decay"], config["lr_decay_epochs"], config["task"]) == (0.97, 2, "classify")
    result = json.loads((out / "table.json").read_text())
    summary = json.loads((grid / "summary.json").read_text())
    row = result["rows"][1]
    assert (row["family"], row["seeds"], row["missing_seeds"]) == ("grid", 1, [])
    assert row["test_error"]["mean"] == pytest.approx(100 * summary["test_error"]) and row["test_error"]["std"] is None
    assert row["test_rate"]["mean"] == pytest.approx(summary["test_rate"])
    # A second seed not trained yet: listed as missing, and the exit status says the table is incomplete.
    capsys.readouterr()
    assert example.main([*small, "--families", "diagonal", "--seeds", "0", "1", "--epochs", "1",
                         "--table-only"]) == 1
    assert "| diagonal | 0.001 |" in capsys.readouterr().out and "(1 missing)" in (out / "table.md").read_text()
    # A larger budget resumes the run from its checkpoint; the one already there is not trained again.
    assert example.main([*small, "--families", "diagonal", "--seeds", "0", "--epochs", "2"]) == 0
    rows = read_jsonl(out / "diagonal" / "beta-0.001" / "seed-0" / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["resumed_with"] == {"epochs": 2}
    assert [r["lr"] for r in rows] == pytest.approx([1e-4, 1e-4])
    before = (out / "diagonal" / "beta-0.001" / "seed-0" / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    assert example.main([*small, "--families", "diagonal", "--seeds", "0", "--epochs", "2"]) == 0
    assert capsys.readouterr().out.startswith("0 run(s) to train")
    assert (out / "diagonal" / "beta-0.001" / "seed-0" / "summary.json").stat().st_mtime_ns == before
    assert np.isfinite(json.loads((out / "table.json").read_text())["rows"][0]["test_error"]["mean"])
