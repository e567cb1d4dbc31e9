"""gvae sweep's spec: the runs a spec gives, every bad spec as one line naming file, key and expectation,
the flags a run is trained with, and what is refused before a cluster starts."""
import importlib.util
import json
import math
import sys

import pytest

from gvae.cli import main
from gvae.commands import build_parser
from gvae.sweep.execute import _record_spec, plan, train_flags
from gvae.sweep.spec import SpecError, load_spec
from gvae.training import TrainConfig
from gvae.training.config import setting_fields
from tests.sweep_helpers import REPO, SPEC, write_spec, edit, fake_run

_spec = importlib.util.spec_from_file_location("ggm_results", REPO / "examples" / "ggm_results.py")
ggm_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ggm_results)


def run_ggm_results(capsys, *argv):
    """examples/ggm_results.py in this process (its imports are this process's already): (exit status,
    stdout, stderr)."""
    capsys.readouterr()
    code = ggm_results.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


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


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "examples").glob("*.toml")))
def test_every_example_spec_is_valid(name):
    assert load_spec(REPO / "examples" / name).runs


def test_the_example_spec_of_the_mmd_comparison():
    sweep = load_spec(REPO / "examples" / "mmd_sweep.toml")
    settings = {run.name: (run.config.posterior, run.config.alpha, run.config.mmd) for run in sweep.runs}
    assert settings == {f"{f}-{way}": (f, alpha, mmd) for f in ("diagonal", "extgrid")
                        for way, alpha, mmd in (("elbo", 0.0, 0.0), ("infovae", 0.0, 1000.0), ("mmdvae", 1.0, 1000.0))}
    assert sweep.seeds == (0, 1) and sweep.eval == {"iw_samples": 1000, "limit": 2000}


@pytest.mark.slow
def test_the_ggm_results_beside_the_paper(tmp_path, capsys):
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
    code, done, err = run_ggm_results(capsys, sweep.out, "--out", tmp_path / "results")
    assert code == 0, err
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
    assert "- extgrid/seed-1: training not finished (50 epochs done)" in text and text == done
    assert res["families"]["extgrid"]["learning_curves"]["best_valid_elbo"]["n_seeds"] == 1  # not the unfinished run
    assert "| diagonal | " + f"{-100 + 0.015 * (epochs - 1):.2f} ± {0.01 * (epochs - 1) / math.sqrt(2):.2f} | 0.75 ± 0.35 |" in text
    assert (tmp_path / "results" / "ggm_curves.png").is_file() == (importlib.util.find_spec("matplotlib") is not None)
    code, _, err = run_ggm_results(capsys, tmp_path / "results")
    assert code == 2 and err.count("\n") == 1 and "holds no sweep" in err

    # --archive: the evaluated runs without their checkpoints, a sweep folder of its own that gives the
    # same table, and that a sweep goes on from by training only the run it lacks.
    code, archived, err = run_ggm_results(capsys, sweep.out, "--out", tmp_path / "again", "--archive",
                                          tmp_path / "archive")
    assert code == 0, err
    assert "archived 5 evaluated run(s)" in archived
    files = sorted(str(f.relative_to(tmp_path / "archive")) for f in (tmp_path / "archive").rglob("*") if f.is_file())
    assert "sweep.toml" in files and not any("checkpoint" in f or "extgrid/seed-1" in f for f in files)
    assert "diagonal/seed-1/sweep_eval.json" in files and "diagonal/seed-1/metrics.jsonl" in files
    code, _, err = run_ggm_results(capsys, tmp_path / "archive", "--out", tmp_path / "from_archive")
    assert code == 0, err
    from_archive = json.loads((tmp_path / "from_archive" / "ggm_table.json").read_text())
    for family, entry in res["families"].items():
        for key in ("test_elbo", "test_log_likelihood", "epochs", "learning_curves"):
            assert from_archive["families"][family][key] == entry[key], (family, key)
    assert from_archive["families"]["extgrid"]["missing"] == [{"seed": 1, "reason": "not trained yet"}]
    jobs, counts, _ = plan(load_spec(tmp_path / "archive" / "sweep.toml", tmp_path / "archive"))
    assert [job.id for job in jobs] == ["extgrid/seed-1"] and counts["finished"] == 5 and counts["new"] == 1
    code, _, err = run_ggm_results(capsys, sweep.out, "--out", tmp_path / "again", "--archive", sweep.out)
    assert code == 2 and "another folder" in err


def test_train_flags_give_the_same_configuration_to_gvae_train(tmp_path):
    """What a task passes to gvae train parses back to the configuration of the spec."""
    text = edit(SPEC, "epochs = 2", "epochs = 2\nlr = 3e-4\nsquash = 1e-7\npatience = 3")
    text += '\n[[configs]]\nname = "g"\nposterior = "grid"\ngrid_shape = [2, 2]\n'
    for run in load_spec(write_spec(tmp_path, text)).runs:
        args = build_parser().parse_args(["train", "--out", "x", *train_flags(run.config)])
        assert TrainConfig.of(**{k: getattr(args, k) for k in setting_fields()}) == run.config


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
    (("epochs = 2", 'epochs = 2\ntask = "classify"'), "[base] task", "train a classifier with gvae train --task classify"),
    (("latent = 4", "latent = 12345678901234567890"), "[base] latent",
     "expected a positive integer of at most 2147483647"),
    (("hidden = [16]", "hidden = [12345678901234567890]"), "[base] hidden", "of at most 2147483647"),
    (("epochs = 2", "epochs = 2\nmmd = 1e30"), "configuration 'diagonal'",  # ended as exit 3 of every run
     "mmd 1e+30 is beyond float32 training: mmd must be at most 1e+13"),
    (("epochs = 2", "epochs = 2\nbeta = 1e308"), "configuration 'diagonal'", "beta 1e+308 is beyond float32 training"),
    (("iw_samples = 10", "iw_samples = 12345678901234567890"), "[eval] iw_samples", "of at most 2147483647"),
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_local_cluster_takes_a_free_port_beside_another_cluster():
    """With Dask's port 8787 held (by another sweep's cluster, say), the local cluster warned "Port 8787 is
    already in use" and left a socket open: its scheduler's HTTP server takes a free port instead."""
    import socket
    import warnings
    distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'gvae[dask]')")

    from gvae.sweep.execute import _connect

    holder = socket.socket()
    try:
        holder.bind(("", 8787))
        holder.listen()
    except OSError:  # held already: the same case
        pass
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client, cluster = _connect(distributed, None, 1)
            try:
                port = cluster.scheduler.http_server.port
            finally:
                client.close()
                cluster.close()
    finally:
        holder.close()
    assert port != 8787 and not [w for w in caught if "8787" in str(w.message)], [str(w.message) for w in caught]


def test_a_folder_that_holds_no_sweep_is_refused(tmp_path, capsys):
    pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'gvae[dask]')")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "notes.txt").write_text("the user's")
    (tmp_path / "tiny.npz").write_bytes(b"")
    assert main(["sweep", str(write_spec(tmp_path))]) == 2
    assert "is not empty and holds no sweep" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["notes.txt"]


def test_the_sweep_s_counts_are_singular_for_one():
    """The sweep's lines say "1 seed", "1 run" ("1 seeds" was seen)."""
    from gvae.sweep.execute import _count
    assert [_count(n, "seed") for n in (0, 1, 2)] == ["0 seeds", "1 seed", "2 seeds"]
