"""gvae eval on runs of tasks with their own log-weights (binary, autoregressive, gamma and Poisson latents,
HVM): the estimate against log p(x) enumerated over every code of a small DARN, its bounds in order, the
same results on one thread and two, a stopped evaluation that goes on to the same numbers, and the
commands that still refuse such runs."""
import itertools
import json

import numpy as np
import pytest

import gvae.evaluation.evaluate as ev
from gvae import kernels
from gvae.cli import main
from gvae.evaluation.task_weights import TaskWeights
from gvae.models.binary.model import ENCODER_AR, PRIOR, PRIOR_AR, log_weights
from gvae.training import TrainConfig
from gvae.training.runs import build_model
from gvae.training.tasks import task_class

from tests.helpers import trained_straight_and_resumed


def _darn(latent=3, n_in=5, seed=0):
    """A float64 DARN task of ``latent`` autoregressive units on n_in pixels, its weights drawn away from zero."""
    config = TrainConfig.of(task="darn", estimator="taylor", latent=(latent,), hidden=(6,), dtype="float64")
    model = build_model(config, n_in)
    rng = np.random.default_rng(seed)
    params = dict(model.new_params(rng).views)
    for name, scale in ((PRIOR, 0.5), (ENCODER_AR, 1.0), (PRIOR_AR, 1.0)):
        params[name] = rng.normal(0, scale, params[name].shape)
    return task_class("darn")(config, model, "cpu"), params, rng


def _exact_log_px(model, params, x):
    """(log p(x), chi2) over all 2^d codes h, each drawn by uniforms that force it: log p(x) = log sum_h
    p(x, h), where log p(x, h) = the log-weight + log q(h|x), the model's own terms; chi2 = E_q[(w / p(x))^2]
    - 1 = sum_h p(h|x)^2 / q(h|x) - 1, the weights' relative variance, so that L_K's standard error is
    about sqrt(chi2 / K)."""
    d = model.noise_size
    codes = np.array(list(itertools.product([0.0, 1.0], repeat=d)))
    u = np.broadcast_to(np.where(codes > 0, 0.0, 1 - 1e-12)[:, None, :], (len(codes), len(x), d)).copy()
    rec, ratio, log_q = log_weights(model, params, x, u)
    joint = rec + ratio + log_q
    top = joint.max(0)
    log_px = top + np.log(np.exp(joint - top).sum(0))
    posterior = np.exp(joint - log_px)
    return log_px, (posterior ** 2 / np.exp(log_q)).sum(0) - 1


def test_the_estimate_converges_to_log_px_enumerated_over_every_code():
    task, params, rng = _darn()
    x = (rng.random((6, 5)) < 0.5).astype(np.float64)
    exact, chi2 = _exact_log_px(task.model, params, x)
    k = 20000
    per, means, _ = ev.evaluate(TaskWeights(task.reading), params, x, k, ks=(1, 10, 100), seed=3, batch_size=4,
                                progress=False)
    se = np.sqrt(chi2 / k)
    assert np.all(np.abs(per["log_likelihood"] - exact) < 5 * se) and se.max() < 0.05, (per["log_likelihood"], exact, se)
    # Jensen: the bounds rise with k towards log p(x); the ELBO lies below it by the posterior's KL gap.
    assert np.all(per["iwae_1"] <= per["iwae_10"] + 1e-12) and np.all(per["iwae_10"] <= per["iwae_100"] + 1e-12)
    assert np.all(per["iwae_100"] <= exact + 5 * se) and np.all(per["elbo"] < exact)


def test_two_threads_give_the_one_threads_numbers(split_everything):
    task, params, rng = _darn(latent=6, n_in=20)
    x = (rng.random((30, 20)) < 0.5).astype(np.float64)
    out = []
    for threads in (1, 2):
        kernels.set_threads(threads)
        out.append(ev.importance_sampling(TaskWeights(task.reading), params, x, 64, 5, ks=(1, 8), batch_size=16,
                                          progress=False))
    for name in out[0]:
        np.testing.assert_allclose(out[1][name], out[0][name], rtol=1e-12)


def test_the_memory_bound_cuts_the_draws_into_passes():
    task, params, rng = _darn()
    source = TaskWeights(task.reading)
    per_sample = 3 * 10 * source.units * 8  # three float64 arrays per unit, draw and row
    assert source.samples_per_pass(10, 7 * per_sample) == 7 and source.samples_per_pass(10, 1) == 1
    x = (rng.random((10, 5)) < 0.5).astype(np.float64)
    whole = ev.importance_sampling(source, params, x, 30, 2, ks=(), batch_size=10, progress=False)
    cut = ev.importance_sampling(source, params, x, 30, 2, ks=(), batch_size=10, progress=False,
                                 memory_mb=7 * per_sample / 2 ** 20)
    np.testing.assert_array_equal(cut["log_likelihood"], whole["log_likelihood"])  # the same noise, in passes


@pytest.fixture(scope="module")
def darn_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("darn")
    flags = ["--task", "darn", "--estimator", "taylor", "--latent", "8", "4", "--hidden", "16", "--batch-size", "40"]
    _, summary, _, data = trained_straight_and_resumed(folder, flags)
    return folder / "straight", data, summary


def test_gvae_eval_estimates_a_darn_runs_log_px(darn_run, capsys):
    run, data, summary = darn_run
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(data), "--iw-samples", "1000", "--batch-size", "20"]) == 0
    captured = capsys.readouterr()
    assert "log p(x) ~ " in captured.out and "(L_1000: 1,000 importance samples) nats per image; 40 test images" \
        in captured.out
    result = json.loads((run / "eval.json").read_text())
    assert result["n_test"] == 40 and result["iw_samples"] == 1000
    assert result["test_iwae_1"] < result["test_iwae_5"] < result["test_iwae_50"] < result["test_log_likelihood"]
    # The summary's L_1000 on the same 40 test images, with other noise: the same estimate within its spread.
    assert abs(result["test_log_likelihood"] - summary["test_log_px"]) < 0.1
    assert abs(result["test_elbo"] - summary["test_elbo"]) < 1.0


def test_a_stopped_task_evaluation_goes_on_to_the_same_numbers(darn_run, monkeypatch, capsys):
    run, data, _ = darn_run
    argv = ["eval", str(run), "--data", str(data), "--iw-samples", "30", "--batch-size", "10", "--quiet",
            "--per-example", str(run / "per.npz")]
    assert main(argv) == 0
    straight = dict(np.load(run / "per.npz"))
    for name in ("eval.json", "eval_k30.json", "per.npz"):
        (run / name).unlink()
    real, calls = ev._log_weights_into, []

    def stopped(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(ev, "_log_weights_into", stopped)
    assert main(argv) == 130
    assert (run / "eval_k30.partial.npz").is_file()
    monkeypatch.setattr(ev, "_log_weights_into", real)
    assert main(argv) == 0
    again = dict(np.load(run / "per.npz"))
    assert set(again) == set(straight) and all(np.array_equal(again[k], straight[k]) for k in straight)
    assert not (run / "eval_k30.partial.npz").exists()


@pytest.mark.parametrize("command", ["plot", "analyze"])
def test_the_commands_that_need_a_vaes_encoder_still_refuse_a_darn_run(darn_run, capsys, command):
    """plot and analyze refuse a DARN run in one line; gvae sample draws from its prior (tests/test_binary.py)."""
    run, data, _ = darn_run
    capsys.readouterr()
    assert main([command, str(run), "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "a DARN (--task darn), which gvae plot and analyze do not read" in err
    assert "gvae sample draws from its prior" in err and "gvae eval estimates its log p(x)" in err
