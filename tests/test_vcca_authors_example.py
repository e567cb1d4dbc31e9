"""examples/vcca_authors_protocol.py on generated data for one and two epochs: each run is trained with the
protocol's settings, a finished run is skipped, an unfinished one resumed, a failing one stops the queue with
its exit status, and queue names it does not know are refused with a message."""
import importlib.util
import json
import os
from pathlib import Path

import pytest

from gvae.io.files import read_jsonl
from tests.helpers import write_data

spec = importlib.util.spec_from_file_location(
    "vcca_authors_protocol", Path(__file__).resolve().parents[1] / "examples" / "vcca_authors_protocol.py")
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


@pytest.mark.slow
def test_a_queue_trains_skips_and_resumes_its_runs(tmp_path, capsys):
    data, out = str(write_data(tmp_path / "tiny.npz")), tmp_path / "runs"
    core = min(os.sched_getaffinity(0))
    assert example.main([str(out), "vccap-s0", "vcca-extgrid-s1", "--epochs", "1", "--data", data,
                         "--core", str(core)]) == 0
    private, grid = (json.loads((out / name / "config.json").read_text()) for name in ("vccap-s0", "vcca-extgrid-s1"))
    protocol = {"task": "vcca", "latent": 40, "hidden": [1024, 1024, 1024], "activation": "relu",
                "init": "uniform-0.05", "dropout": 0.2, "input_dropout": 0.2, "code_dropout": 0.2, "samples": 5,
                "decoder_draws": "own", "view2_likelihood": "pixel-gaussian", "view2_mean": "sigmoid",
                "lr": 1e-4, "batch_size": 100, "test_params": "last", "view_weight": 1.0}
    assert {k: private[k] for k in protocol} == protocol == {k: grid[k] for k in protocol}
    assert (private["private"], private["posterior"], private["seed"]) == (30, "diagonal", 0)
    assert (grid["private"], grid["posterior"], grid["grid_shape"], grid["seed"]) == (0, "extgrid", [5, 8], 1)
    assert all((out / name / "summary.json").is_file() for name in ("vccap-s0", "vcca-extgrid-s1"))
    assert "svm_ovo_test_error" in json.loads((out / "vccap-s0" / "summary.json").read_text())
    capsys.readouterr()
    # Done runs are skipped; an interrupted one (its summary gone, its checkpoint kept) goes on to 2 epochs.
    (out / "vcca-extgrid-s1" / "summary.json").unlink()
    assert example.main([str(out), "vccap-s0", "vcca-extgrid-s1", "--epochs", "2", "--data", data]) == 0
    said = capsys.readouterr().out
    assert "vccap-s0: done" in said and "vcca-extgrid-s1: gvae train --resume" in said
    assert len(read_jsonl(out / "vccap-s0" / "metrics.jsonl")) == 1
    assert len(read_jsonl(out / "vcca-extgrid-s1" / "metrics.jsonl")) == 2


def test_a_failing_run_stops_the_queue_with_its_status(tmp_path, capsys):
    out = tmp_path / "runs"
    code = example.main([str(out), "vcca-s0", "vcca-s1", "--epochs", "1", "--data", str(tmp_path / "missing.npz")])
    assert code != 0
    assert "vcca-s0: gvae train ended with exit status" in capsys.readouterr().err
    assert (out / "vcca-s0.log").is_file() and not (out / "vcca-s1.log").exists()


@pytest.mark.parametrize("words, said", [(["vcca-s"], "not a queue"), (["vae-s0"], "not a queue"),
                                         (["vcca", "--epochs", "0"], "at least 1"),
                                         (["vcca", "--core", "4096"], "not among"),
                                         (["vcca", "--core", "0", "0"], "names a core twice")])
def test_what_it_does_not_know_is_refused(tmp_path, capsys, words, said):
    with pytest.raises(SystemExit) as e:
        example.parse_args([str(tmp_path), *words])
    assert e.value.code == 2 and said in capsys.readouterr().err


def test_core_is_refused_where_the_system_cannot_pin(tmp_path, capsys, monkeypatch):
    monkeypatch.delattr(example.os, "sched_setaffinity")
    with pytest.raises(SystemExit) as e:
        example.parse_args([str(tmp_path), "vcca", "--core", "0"])
    assert e.value.code == 2 and "sched_setaffinity" in capsys.readouterr().err


def test_the_queues_name_the_runs_of_the_reproductions_row():
    assert example.parse_args(["x", "vcca"]).names == ["vcca-s0", "vcca-s1", "vcca-chain-s0", "vcca-chain-s1"]
    assert example.parse_args(["x", "private"]).names == ["vccap-s0", "vccap-s1", "vcca-extgrid-s0",
                                                          "vcca-extgrid-s1"]
    words = example.command("vccap-s1", Path("/nowhere/vccap-s1"), 250, None)
    assert words[:len(example.PROTOCOL) + 1] == ["train", *example.PROTOCOL]
    assert words[words.index("--private") + 1] == "30" and words[words.index("--seed") + 1] == "1"
    assert words[words.index("--threads") + 1] == "1"


def test_a_queue_on_several_cores_runs_one_thread_a_core(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    assert example.parse_args([str(tmp_path), "vcca", "--core", *map(str, cores)]).core == cores
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "checkpoint.npz").touch()
    start, resume = (example.command("vcca-s1", tmp_path / name, 250, None, threads=2) for name in ("new", "old"))
    assert "--resume" not in start and "--resume" in resume
    assert start[start.index("--threads") + 1] == "2" == resume[resume.index("--threads") + 1]
