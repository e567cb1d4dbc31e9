"""examples/rate_distortion.py on a small sweep of generated data: the test rate and distortion of each
trained run, the runs not yet trained listed as missing, the table and the picture written."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from gvae.io.mnist import load_mnist
from gvae.model.objectives import elbo_terms
from gvae.sweep.spec import load_spec
from gvae.training import train
from gvae.training.batching import fixed_eval_sets
from gvae.training.runs import load_model
from tests.helpers import write_data

pytest.importorskip("matplotlib")
spec = importlib.util.spec_from_file_location(
    "rate_distortion", Path(__file__).resolve().parents[1] / "examples" / "rate_distortion.py")
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)

SPEC = """
[sweep]
out = "."
seeds = [0]
data = "data.npz"
[base]
latent = 6
hidden = [16]
epochs = 1
batch_size = 50
[grid]
posterior = ["diagonal", "extgrid"]
target_rate = [1.0, 4.0]
"""


def test_rates_and_distortions_of_the_trained_runs(tmp_path, capsys):
    write_data(tmp_path / "data.npz", n=200)
    (tmp_path / "sweep.toml").write_text(SPEC)
    sweep = load_spec(tmp_path / "sweep.toml")
    data = load_mnist(sweep.data)
    for run in sweep.runs[:-1]:  # the last run left untrained
        train(run.config, data, run.folder, progress=False, quiet=True)
    assert example.main([str(tmp_path), "--out", str(tmp_path / "results")]) == 0
    out = json.loads((tmp_path / "results" / "rd.json").read_text())
    assert not out["complete"] and [p["R"] is None for p in out["points"]] == [False, False, False, True]
    first = sweep.runs[0]
    model, params, _ = load_model(first.folder)
    _, test = fixed_eval_sets(data, model)
    kl = elbo_terms(model, params, test, np.zeros((1, len(test), model.noise_size), model.dtype))[1]
    point = out["points"][0]
    assert point["R"] == pytest.approx(float(np.mean(kl, dtype=np.float64)), rel=1e-4)  # closed form, no noise
    assert point["neg_elbo"] == pytest.approx(point["R"] + point["D"]) and point["D"] > 0
    table = (tmp_path / "results" / "rd.md").read_text()
    assert "| extgrid | target_rate 4 |" in table and "1 missing" in table
    assert (tmp_path / "results" / "rd.png").stat().st_size > 10_000


def test_a_folder_without_a_sweep_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="holds no sweep"):
        example.main([str(tmp_path)])
