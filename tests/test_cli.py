"""The command line on a tiny generated data file."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gvae.cli import main


def test_train_writes_the_contract_files(tmp_path, data_file):
    out = tmp_path / "run"
    rc = main(["train", "--data", str(data_file), "--limit", "120", "--epochs", "2", "--latent", "3",
               "--hidden", "16", "--activation", "tanh", "--batch-size", "40", "--out", str(out), "--quiet"])
    assert rc == 0
    for name in ("config.json", "metrics.jsonl", "checkpoint.npz", "summary.json"):
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_train"] == 120 and np.isfinite(summary["test_elbo"])
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and {"epoch", "train_elbo", "valid_elbo", "seconds"} <= rows[0].keys()


@pytest.mark.parametrize("argv, message", [
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--posterior", "nope"], "invalid choice: 'nope'"),
    (["--latent", "0"], "expected a positive integer"),
    (["--lr", "nan"], "positive finite number"),
])
def test_bad_flags_are_refused(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", str(tmp_path / "r")] + argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval", "sample", "analyze", "plot"])
def test_cuda_without_cupy_is_one_clear_error(tmp_path, capsys, command):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here: the device is available")
    except ImportError:
        pass
    argv = ["train", "--out", str(tmp_path / "r")] if command == "train" else [command, str(tmp_path / "r")]
    rc = main(argv + ["--quiet", "--device", "cuda"])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1
    assert "CuPy" in err and 'pip install "gvae[cuda12]"' in err and '"gvae[cuda13]"' in err


def test_missing_data_file(tmp_path, capsys):
    rc = main(["train", "--data", str(tmp_path / "absent.npz"), "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2
    assert "absent.npz" in capsys.readouterr().err


@pytest.mark.slow
def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "gvae.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("gvae ")


@pytest.mark.parametrize("posterior", ["ar1", "rank1", "chain", "grid", "extgrid", "full"])
def test_every_family_trains_from_the_cli(tmp_path, data_file, posterior):
    out = tmp_path / posterior
    rc = main(["train", "--data", str(data_file), "--limit", "80", "--epochs", "1", "--latent", "6",
               "--hidden", "8", "--posterior", posterior, "--batch-size", "40", "--out", str(out), "--quiet"]
              + (["--grid-shape", "2", "3"] if "grid" in posterior else []))
    assert rc == 0
    assert np.isfinite(json.loads((out / "summary.json").read_text())["test_elbo"])


def test_prime_latent_on_a_grid_is_refused(tmp_path, data_file, capsys):
    rc = main(["train", "--data", str(data_file), "--latent", "7", "--posterior", "grid", "--out",
               str(tmp_path / "r"), "--quiet"])
    assert rc == 2 and "latent dimension 7 has no r x c lattice" in capsys.readouterr().err


def test_iwae_training_then_eval(tmp_path, data_file):
    out = tmp_path / "iwae"
    assert main(["train", "--data", str(data_file), "--limit", "80", "--epochs", "2", "--latent", "4",
                 "--hidden", "8", "--iw-samples", "5", "--warmup", "1", "--schedule", "iwae", "--out", str(out),
                 "--quiet"]) == 0
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["lr"] == pytest.approx(1e-3) and rows[1]["lr"] == pytest.approx(1e-3 * 10 ** (-1 / 7))
    assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", "50", "--limit", "30",
                 "--per-example", str(tmp_path / "per.csv"), "--quiet"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["iw_samples"] == 50 and result["n_test"] == 30
    assert result["test_log_likelihood"] >= result["test_iwae_5"] - 0.5 >= result["test_iwae_1"] - 1.0
    per = np.loadtxt(tmp_path / "per.csv", delimiter=",", skiprows=1)
    assert per.shape == (30, 4)


def test_eval_records_its_data_and_refuses_mnist_for_a_run_trained_on_other_data(tmp_path, data_file, monkeypatch,
                                                                                    capsys):
    """Without --data, gvae eval read MNIST, whatever the run had been trained on, and eval.json did not say
    which data it read. It records the data and their fingerprint, refuses MNIST for a run trained on a
    user's file, and warns when --data names other data than the run's."""
    from gvae.io import mnist
    from gvae.training import checkpoint
    from tests.helpers import write_data

    out = tmp_path / "r"
    assert main(["train", "--data", str(data_file), *TINY_RUN, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    recorded = checkpoint.load(out / "checkpoint.npz")[1]["data_sha256"]
    other = write_data(tmp_path / "other.npz", seed=1)
    monkeypatch.setattr(mnist, "fetch_mnist", lambda *a: other)  # MNIST stands in as other data
    capsys.readouterr()
    assert main(["eval", str(out), "--iw-samples", "5", "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"gvae: error: {out} was trained on other data than MNIST") and error.endswith(
        "give the data it was trained on with --data PATH") and len(error.splitlines()) == 1, error
    assert not (out / "eval.json").exists()

    assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", "5", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    result = json.loads((out / "eval.json").read_text())
    assert (result["data"], result["data_sha256"], result["data_is_the_runs"]) == (str(data_file.absolute()),
                                                                                recorded, True)

    assert main(["eval", str(out), "--data", str(other), "--iw-samples", "5", "--quiet"]) == 0
    assert f"gvae: warning: {out} was trained on other data than {other} " in capsys.readouterr().err
    result = json.loads((out / "eval.json").read_text())
    assert result["data"] == str(other.absolute()) and result["data_sha256"] != recorded
    assert result["data_is_the_runs"] is False

    monkeypatch.setattr(mnist, "fetch_mnist", lambda *a: data_file)  # MNIST is the run's data
    assert main(["eval", str(out), "--iw-samples", "5", "--quiet"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert (result["data"], result["data_is_the_runs"]) == ("mnist", True)


def test_train_and_eval_say_which_test_elbo_they_print(tmp_path, data_file, capsys):
    """gvae train's, eval's and analyze's test ELBOs of one model differ (other draws of z, other images):
    each line says what it is (analyze's: tests/test_gaps.py)."""
    out = tmp_path / "r"
    assert main(["train", "--data", str(data_file), *TINY_RUN, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert capsys.readouterr().out.startswith(
        f"test ELBO {summary['test_elbo']:.3f} nats (all {summary['n_test']} test images, one draw of z each, the "
        "best epoch's parameters); ")
    assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", "7", "--seed", "3", "--params", "last"]) == 0
    line = capsys.readouterr().out
    result = json.loads((out / "eval.json").read_text())
    assert line.startswith(f"test ELBO {result['test_elbo']:.3f} (one draw of z per image, seed 3)  L_1 "), line
    assert (f"log p(x) ~ {result['test_log_likelihood']:.3f} (L_7: 7 importance samples) nats per image; "
            f"{result['n_test']} test images, the last epoch's parameters, ") in line, line


def test_the_count_of_kernels_compiled_comes_before_the_line_whose_wait_it_explains(tmp_path, data_file, monkeypatch,
                                                                                      capsys):
    """The line "compiled N Numba kernels" came after gvae sample's "wrote ..." and after an epoch's line: each
    command reports the compilation before each line it prints."""
    import gvae.commands
    out = tmp_path / "r"
    monkeypatch.setattr(gvae.commands, "report_compilations", lambda: print("compiled"))
    assert main(["train", "--data", str(data_file), *TINY_RUN, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    assert main(["sample", str(out)]) == 0
    assert main(["eval", str(out), "--data", str(data_file), "--iw-samples", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["compiled", "test", "compiled", "wrote", "compiled", "test"], lines


def test_resume_continues_to_the_same_numbers(tmp_path, data_file):
    common = ["--data", str(data_file), "--limit", "80", "--latent", "3", "--hidden", "8", "--batch-size", "20",
              "--quiet"]
    assert main(["train", *common, "--epochs", "3", "--out", str(tmp_path / "straight")]) == 0
    assert main(["train", *common, "--epochs", "1", "--out", str(tmp_path / "split")]) == 0
    assert main(["train", *common, "--epochs", "3", "--resume", "--out", str(tmp_path / "split")]) == 0
    a = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    b = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(b[1])["resumed_with"] == {"epochs": 3}  # the change is recorded where it took effect
    strip = lambda line: {k: v for k, v in json.loads(line).items()  # noqa: E731
                          if not k.startswith("seconds") and k != "resumed_with"}
    assert [strip(l) for l in a] == [strip(l) for l in b]


@pytest.mark.parametrize("likelihood, extra", [("gaussian", ["--psi", "decoder"]), ("logitnormal", []),
                                               ("logitnormal-grid", []),
                                               ("logitnormal-extgrid", ["--pixel-factor", "global"])])
def test_continuous_likelihoods_train_eval_and_sample(tmp_path, likelihood, extra):
    rng = np.random.default_rng(0)
    x = (np.floor(rng.random((120, 784)) * 256) / 256).astype(np.float32)  # 8-bit intensities, k / 256
    path = tmp_path / "gray.npz"
    np.savez(path, train_x=x[:80], train_y=np.zeros(80), valid_x=x[80:100], valid_y=np.zeros(20),
             test_x=x[100:], test_y=np.zeros(20))
    out = tmp_path / likelihood
    assert main(["train", "--data", str(path), "--epochs", "1", "--latent", "4", "--hidden", "8",
                 "--likelihood", likelihood, *extra, "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["test_elbo_bits_per_dim"] < 40
    assert main(["eval", str(out), "--data", str(path), "--iw-samples", "10", "--quiet"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["test_log_likelihood_bits_per_dim"] <= result["test_elbo_bits_per_dim"] + 0.05
    assert main(["sample", str(out), "--n", "4"]) == 0
    assert (out / "decoder_means.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_continuous_likelihood_refuses_binarized_data(tmp_path, capsys):
    x = (np.random.default_rng(0).random((60, 784)) < 0.5).astype(np.float32)
    path = tmp_path / "binary.npz"
    np.savez(path, **{f"{s}_x": x[:20] for s in ("train", "valid", "test")},
             **{f"{s}_y": np.zeros(20) for s in ("train", "valid", "test")})
    assert main(["train", "--data", str(path), "--likelihood", "logitnormal", "--out", str(tmp_path / "r"),
                 "--quiet"]) == 2
    assert "binarized" in capsys.readouterr().err


@pytest.mark.slow
def test_plot_command(tmp_path, data_file, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert main(["train", "--data", str(data_file), "--limit", "60", "--epochs", "1", "--latent", "2",
                 "--hidden", "8", "--posterior", "chain", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["plot", str(out), "--data", str(data_file), "--quiet"]) == 0
    assert {"curves.png", "decoder_means.png", "manifold.png", "correlation.png"} <= {p.name for p in out.glob("*.png")}
    assert capsys.readouterr().out == ""  # --quiet: no line
    # gvae sample draws the z of gvae plot for the same seed: one picture under one name, whichever command drew it
    assert main(["sample", str(out), "--seed", "0", "--out", str(tmp_path / "s")]) == 0
    assert f"wrote {tmp_path / 's_means.png'}" in capsys.readouterr().out
    assert (out / "decoder_means.png").read_bytes() == (tmp_path / "s_means.png").read_bytes()
    assert main(["sample", str(out), "--seed", "5", "--out", str(tmp_path / "s5"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "s5_means.png").read_bytes() != (tmp_path / "s_means.png").read_bytes()


@pytest.mark.slow
def test_threads_from_python_leave_numba_alone(tmp_path):
    """``main([..., "--threads", "1"])`` called from a Python process whose Numba threads have started
    (a notebook, this test suite) leaves Numba's thread count and variable as they were (gvae runs no
    Numba thread pool; a changed NUMBA_NUM_THREADS would make Numba refuse every later compilation:
    "Cannot set NUMBA_NUM_THREADS ... once the threads have been launched")."""
    script = (
        "import os, numba, numpy as np\n"
        "from gvae.process import set_threads\n"
        "@numba.njit(parallel=True)\n"
        "def total(x):\n"
        "    s = 0.0\n"
        "    for i in numba.prange(x.size):\n"
        "        s += x[i]\n"
        "    return s\n"
        "assert total(np.ones(64)) == 64.0\n"
        "set_threads(1)\n"
        "assert numba.get_num_threads() == 2 and os.environ['NUMBA_NUM_THREADS'] == '2'\n"
        "assert os.environ['OMP_NUM_THREADS'] == '1'\n"
        "@numba.njit\n"
        "def later(v):\n"
        "    return v + 1.0\n"
        "assert later(1.0) == 2.0\n"
    )
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


_CTRL_C_WHILE_LOADING = """
import os, signal, sys
from gvae import cli, process
real_prepare = process.prepare

def prepare(argv):  # Ctrl-C right as NumPy starts to load (the first second of a command)
    os.kill(os.getpid(), signal.SIGINT)
    real_prepare(argv)
cli.prepare = prepare
code = cli.main(sys.argv[1:])
import numpy  # loaded whole: the interruption did not land inside its import
print(code, numpy.ones(2).sum())
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_sigmask"), reason="no per-thread signal mask")
def test_ctrl_c_while_a_command_loads_numpy_is_a_clean_stop(tmp_path):
    """A Ctrl-C while a command imports NumPy once came out as NumPy's "PyCapsule_Import could not import
    module datetime" ImportError (exit 1, seen when a sweep stopped a run that had just started). It is
    held back during the imports and then taken: "interrupted", exit 130, nothing run."""
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", _CTRL_C_WHILE_LOADING, "train", "--out", str(out), "--epochs", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["130", "2.0"]
    assert "gvae: interrupted" in done.stderr and "ImportError" not in done.stderr
    assert not out.exists()


def test_a_sigint_that_arrives_while_loading_is_taken_not_delivered():
    """gvae.process.load_uninterrupted: the load runs whole; a SIGINT meanwhile is reported, not raised."""
    script = ("import os, signal\nfrom gvae.process import load_uninterrupted\n"
              "print(load_uninterrupted(lambda: os.kill(os.getpid(), signal.SIGINT)), load_uninterrupted(lambda: None))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["True", "False"], done.stderr


class Terminal(io.StringIO):
    """A stderr that is a terminal."""

    def isatty(self):
        return True


TINY_RUN = ["--limit", "120", "--latent", "3", "--hidden", "16", "--batch-size", "20"]


def test_train_into_a_log_prints_one_line_per_epoch_and_no_bar(tmp_path, data_file, capsys):
    """Without a terminal (gvae train ... > log 2>&1) a bar's every redraw stays in the log (6,381 of them,
    561 KB, in 10 epochs of MNIST): there, only the line per epoch."""
    assert main(["train", "--data", str(data_file), *TINY_RUN, "--epochs", "3", "--out", str(tmp_path / "r")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [["epoch", "1/3"], ["epoch", "2/3"], ["epoch", "3/3"]]
    assert len(lines) == 4 and lines[3].startswith("test ELBO ")


def test_train_on_a_terminal_draws_its_bar_and_quiet_leaves_the_result_alone(tmp_path, data_file, monkeypatch,
                                                                                capsys):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["train", "--data", str(data_file), *TINY_RUN, "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    assert "epoch 1/1: " in terminal.getvalue() and "\r" in terminal.getvalue()
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()] == [["epoch", "1/1"], ["test", "ELBO"]]
    terminal.seek(0)
    terminal.truncate()
    assert main(["train", "--data", str(data_file), *TINY_RUN, "--epochs", "1", "--out", str(tmp_path / "q"),
                 "--quiet"]) == 0
    assert terminal.getvalue() == ""  # --quiet: no bar and no line per epoch, on a terminal or not: the result only
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()] == [["test", "ELBO"]]
