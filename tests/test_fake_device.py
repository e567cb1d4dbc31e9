"""The whole device path (training steps, epochs, checkpoints and resume, importance-sampled evaluation,
sampling, and gvae plot and gvae analyze) on a device that refuses host conversions (tests/fake_device.py):
it must run without one implicit conversion, read the host only where stated, upload nothing during a step
or an epoch, and give the CPU's numbers for the same configuration (its generator draws NumPy's streams)."""
import json
import shutil

import numpy as np
import pytest

from gvae.plots import canvas
from gvae.cli import main
from gvae.io.mnist import load_mnist
from gvae.kernels import device_of, to_device, to_host
from gvae.model.objectives import training_loss
from gvae import ops
from gvae.autodiff import value_and_grad
from gvae.training import TrainConfig, Trainer
from gvae.evaluation.evaluate import evaluate
from gvae.training.batching import fixed_eval_sets
from gvae.training.runs import load_model
from tests import fake_device as fake
from tests.helpers import make_data, write_data

fake.install()
CONFIGS = [dict(posterior=p, likelihood=lik, **extra)
           for p, extra in [("diagonal", {}), ("chain", {}), ("extgrid", {"grid_shape": (2, 3)})]
           for lik in ("bernoulli", "logitnormal-grid")]
CONFIGS += [dict(posterior="ar1", likelihood="gaussian", kl="mc", samples=2),
            dict(posterior="grid", likelihood="bernoulli", grid_shape=(2, 3), iw_samples=3, warmup=1.0, polyak=0.9,
                 adam_beta1=0.5, lr_decay=0.5),
            dict(posterior=("chain", "ar1"), likelihood="bernoulli", latent=(6, 4), iw_samples=3),
            dict(posterior=("extgrid", "rank1"), likelihood="bernoulli", latent=(6, 4), grid_shape=(2, 3),
                 inference="top-down"),
            dict(posterior="chain", likelihood="ar-bernoulli")]
SYNCS_PER_STEP = 2  # the gradient norm, and one read of (loss, bound, rec, kl)
RTOL = dict(rtol=2e-5, atol=2e-5)  # float32


def ids(cfg):
    return "-".join("+".join(v) if isinstance(v, tuple) else str(v) for k, v in cfg.items()
                    if k in ("posterior", "likelihood", "kl", "iw_samples", "inference"))


@pytest.fixture(scope="module")
def data():
    return make_data(n=120, d=36)


def trainers(cfg, data, tmp_path):
    config = TrainConfig.of(**{"latent": 6, "hidden": (16,), "epochs": 2, "batch_size": 40, "lr": 3e-3, "seed": 3, **cfg})
    return (Trainer(config, data, tmp_path / "cpu", progress=False, quiet=True),
            Trainer(config, data, tmp_path / "fake", progress=False, quiet=True, device="fake"))


class Counting:
    """COUNTS since entering; fails the test if an implicit conversion was attempted."""

    def __enter__(self):
        fake.COUNTS.clear()
        return fake.COUNTS

    def __exit__(self, *exc):
        assert fake.COUNTS["implicit"] == 0, "a FakeArray was converted to NumPy implicitly"


def test_the_fake_device_refuses_what_a_gpu_refuses():
    a = to_device(np.arange(4.0), "fake")
    with Counting() as counts:
        for attempt in (lambda: np.asarray(a), lambda: a + np.ones(4), lambda: fake.xp.exp(np.ones(4)),
                        lambda: np.exp(a), lambda: float(a), lambda: a[np.array([0, 1])], lambda: a * [1.0],
                        lambda: fake.xp.broadcast_to(np.float32(1), (3,))):
            with pytest.raises(TypeError):
                attempt()
        fake.COUNTS["implicit"] = 0  # (np.asarray above did try: that is what the counter is for)
        assert float(a[2]) == 2.0 and counts["sync"] == 1
        assert device_of(a * 2.0 + np.float32(1)) == "fake" and not hasattr(a, "__array_interface__")
    with pytest.raises(TypeError, match="different devices"):
        device_of(a, np.zeros(2))


def test_categorical_labels_are_checked_on_the_device_with_one_read():
    """Labels outside 0..C-1 are refused on the device too (-1 once read the last class silently), by
    their min and max there: one read when they are fine, no implicit conversion either way."""
    from gvae import ops
    logits = to_device(np.random.default_rng(0).standard_normal((3, 4)), "fake")
    with Counting() as counts:
        got = ops.categorical_log_prob(logits, to_device(np.array([0, 3, 1]), "fake"))
        assert device_of(got) == "fake" and counts["sync"] == 1
    for labels, bad in (([0, -1, 2], -1), ([0, 4, 1], 4)):
        with Counting(), pytest.raises(ValueError, match=f"^categorical_log_prob: labels must be class indices "
                                                         rf"in 0\.\.3 .*got label {bad} "):
            ops.categorical_log_prob(logits, to_device(np.array(labels), "fake"))


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_training_evaluation_and_sampling_stay_on_the_device(cfg, data, tmp_path):
    cpu, dev = trainers(cfg, data, tmp_path)
    assert device_of(dev.params.flat, dev.grad_flat, dev.optimizer.m, dev.train_x, dev.valid_x) == "fake"
    np.testing.assert_array_equal(to_host(dev.params.flat), cpu.params.flat)

    # Steps: the first one copies the model's constants (masks) to the device, once; then nothing is
    # uploaded and the host reads exactly the two things a step needs.
    steps = [(slice(0, 40), 1.0), (slice(40, 80), 0.5), (slice(80, 120), 1.0), (slice(0, 40), 1.0)]
    for k, (rows, weight) in enumerate(steps):
        with Counting() as counts:
            got = dev.step(dev.train_x[rows], weight)
        if k:
            assert counts["upload"] == 0 and counts["sync"] == SYNCS_PER_STEP, dict(counts)
        want = cpu.step(cpu.train_x[rows], weight)
        np.testing.assert_allclose(got, want, **RTOL)
    np.testing.assert_allclose(to_host(dev.params.flat), cpu.params.flat, **RTOL)
    np.testing.assert_allclose(to_host(dev.optimizer.v), cpu.optimizer.v, **RTOL)

    # An epoch: data preparation, order and noise drawn on the device; one read per step plus the norm,
    # and the validation ELBO's mean.
    with Counting() as counts:
        row = dev.run_epoch()
    assert counts["upload"] == 0 and counts["sync"] == SYNCS_PER_STEP * 3 + 1, dict(counts)
    want = cpu.run_epoch()
    for key in ("train_elbo", "train_bound", "train_kl", "valid_elbo"):
        np.testing.assert_allclose(row[key], want[key], **RTOL, err_msg=key)

    # Checkpoints hold host arrays; the CPU run resumed from the device's checkpoint continues as the
    # uninterrupted CPU run does (the generators are derived from (seed, epoch), the streams are NumPy's).
    for trainer, epoch_row in ((dev, row), (cpu, want)):  # what fit's run-folder listener does after an epoch
        trainer.files.epoch_end(trainer, epoch_row)
    resumed = Trainer.resume(tmp_path / "fake", data, progress=False, quiet=True)
    np.testing.assert_allclose(resumed.run_epoch()["train_bound"], cpu.run_epoch()["train_bound"], **RTOL)

    # The rest of the run on the device (its second epoch and the test ELBO) against the CPU's.
    summary, summary_cpu = dev.fit(), cpu.fit()
    for key in ("test_elbo", "best_valid_elbo"):
        np.testing.assert_allclose(summary[key], summary_cpu[key], **RTOL, err_msg=key)

    # Importance-sampled evaluation on the device: host reads independent of the number of batches.
    model, params, _ = load_model(tmp_path / "fake", "last", device="fake")
    model_cpu, params_cpu, _ = load_model(tmp_path / "fake", "last")
    test_x = fixed_eval_sets(data, model)[1][:30]
    x_dev = to_device(test_x, "fake")
    evaluate(model, params, x_dev[:2], n_samples=2, ks=(), progress=False)  # the model's masks go over once
    with Counting() as counts:
        per, means, _ = evaluate(model, params, x_dev, n_samples=6, ks=(1, 3), batch_size=7, progress=False,
                                 kl=dev.config.kl)
    assert counts["upload"] == 0 and counts["sync"] == len(per), dict(counts)
    per_cpu, _, _ = evaluate(model_cpu, params_cpu, test_x, n_samples=6, ks=(1, 3), batch_size=7,
                             progress=False, kl=dev.config.kl)
    assert set(per) == {"elbo", "log_likelihood", "iwae_1", "iwae_3"}
    for key in per:
        assert isinstance(per[key], np.ndarray)
        np.testing.assert_allclose(per[key], per_cpu[key], **RTOL, err_msg=key)

    # Sampling (ancestral, in a hierarchy): z, the decoder, the means and the samples on the device; two
    # reads to get the images.
    rng, rng_cpu = fake.xp.random.default_rng(5), np.random.default_rng(5)
    with Counting() as counts:
        eps = rng.standard_normal((4, model.noise_size), dtype=model.dtype)
        out = model.decode(params, model.prior_sample(params, eps)[0])
        images = [to_host(model.likelihood.mean(out, params)), to_host(model.likelihood.sample(out, params, rng))]
    assert counts["upload"] == 0 and counts["sync"] == 2, dict(counts)
    eps_cpu = rng_cpu.standard_normal((4, model.noise_size), dtype=model.dtype)
    out_cpu = model_cpu.decode(params_cpu, model_cpu.prior_sample(params_cpu, eps_cpu)[0])
    want = [model_cpu.likelihood.mean(out_cpu, params_cpu), model_cpu.likelihood.sample(out_cpu, params_cpu, rng_cpu)]
    for got_i, want_i in zip(images, want):
        np.testing.assert_allclose(got_i, want_i, **RTOL)


def test_gradients_land_in_device_buffers_without_reads(data, tmp_path):
    _, dev = trainers(CONFIGS[2], data, tmp_path)  # chain, bernoulli
    x = dev.train_x[:40]
    eps = fake.xp.random.default_rng(0).standard_normal((1, 40, 6), dtype=np.float32)
    grads = dev.params.unflatten(fake.xp.zeros_like(dev.params.flat))
    step = value_and_grad(training_loss, has_aux=True, out=grads)
    step(dev.params.views, dev.model, x, eps)  # first call: the mask goes to the device
    with Counting() as counts:
        (loss, aux), g = step(dev.params.views, dev.model, x, eps)
    assert g is grads and counts == {}, dict(counts)
    assert device_of(loss, *aux, *g.values()) == "fake"


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory):
    """(run folder, data file): a chain posterior in 2 latent dimensions, so that gvae plot draws every
    picture from the model (reconstructions, decoder means, the manifold, the factor, the correlations)."""
    root = tmp_path_factory.mktemp("chain")
    data = write_data(root / "data.npz", n=120)  # 784 pixels, as --data takes them
    config = TrainConfig.of(latent=2, hidden=(16,), epochs=2, batch_size=40, lr=3e-3, seed=3, posterior="chain")
    Trainer(config, load_mnist(data), root / "run", progress=False, quiet=True).fit()
    return root / "run", data


# gvae plot reads one array per picture drawn from the model: the decoder means of the reconstructions,
# of the prior draws and of the manifold, and the band factor of the few test points for each of the
# Cholesky and the correlation pictures (a chain's family reads its factor L, all its precision is made of).
PLOT_READS = 5


@pytest.mark.skipif(not canvas.available(), reason="gvae plot needs matplotlib")
@pytest.mark.slow
def test_gvae_plot_on_the_device_draws_the_cpus_pictures(chain_run, tmp_path):
    run, data = chain_run
    argv = ["plot", str(run), "--data", str(data), "--quiet", "--out"]
    assert main(argv + [str(tmp_path / "cpu")]) == 0
    with Counting() as counts:
        assert main(argv + [str(tmp_path / "fake"), "--device", "fake"]) == 0
    assert counts["sync"] == PLOT_READS, dict(counts)
    drawn = sorted(p.name for p in (tmp_path / "cpu").glob("*.png"))
    assert drawn == sorted(p.name for p in (tmp_path / "fake").glob("*.png")) and len(drawn) == 6
    for name in drawn:
        assert (tmp_path / "fake" / name).read_bytes() == (tmp_path / "cpu" / name).read_bytes(), name


def analyze_reads(result):
    """The host reads gvae analyze makes on a device, from its result (one stochastic layer): per layer its
    activities and its rates, and the distortion (each read once, after all batches); per refined batch the
    encoder's held-out ELBO (is it finite, its mean), two per Adam step (the loss and the gradient norm, as
    a training step reads), three per check (are the new ELBOs finite, their gain, their mean for the
    trace) and the count of points that kept the encoder's heads; then each per-point estimate once, for
    all batches; and the three parts of the ELBO surgery. None grows with the number of test images or of
    samples."""
    refinement = result["gaps"]["refinement"]
    checks = sum(len(trace) - 1 for trace in refinement["trace"])
    per_batch = 2 + 1
    estimates = 1 + 4 * 2  # log p(x); L_K, ELBO, rate and distortion of each of the two posteriors
    return (2 * len(result["layers"]) + 1 + per_batch * len(refinement["steps"]) + 2 * sum(refinement["steps"])
            + 3 * checks + estimates + 3 * sum(layer["surgery"] is not None for layer in result["layers"]))


@pytest.mark.slow
def test_gvae_analyze_on_the_device_gives_the_cpus_analysis(chain_run, tmp_path):
    run, data = chain_run
    results = {}
    for device in ("cpu", "fake"):
        shutil.copytree(run, tmp_path / device)
        with Counting() as counts:
            assert main(["analyze", str(tmp_path / device), "--data", str(data), "--points", "7", "--iw-samples",
                         "6", "--refine-steps", "30", "--limit", "40", "--quiet", "--device", device]) == 0
        results[device] = json.loads((tmp_path / device / "analysis.json").read_text())
    got, want = results["fake"], results["cpu"]
    assert counts["sync"] == analyze_reads(got), dict(counts)
    assert got["gaps"]["refinement"]["steps"] == [30] and got["gaps"]["points"] == 7
    assert_same_numbers(got, want)


@pytest.mark.slow
def test_gvae_analyze_of_a_ladder_on_the_device_gives_the_cpus_analysis(chain_run, tmp_path):
    """The ladder's analysis (every layer refined, each code's ELBO surgery) on the device: the CPU's numbers,
    with the host reads of a VAE's analysis, a surgery's three per layer."""
    _, data = chain_run
    config = TrainConfig.of(task="vlae", latent=(3, 2), hidden=(16,), epochs=1, batch_size=40, lr=3e-3, seed=3,
                         posterior=("chain", "diagonal"))
    Trainer(config, load_mnist(data), tmp_path / "run", progress=False, quiet=True).fit()
    results = {}
    for device in ("cpu", "fake"):
        shutil.copytree(tmp_path / "run", tmp_path / device)
        with Counting() as counts:
            assert main(["analyze", str(tmp_path / device), "--data", str(data), "--points", "5", "--iw-samples",
                         "6", "--refine-steps", "20", "--limit", "30", "--quiet", "--device", device]) == 0
        results[device] = json.loads((tmp_path / device / "analysis.json").read_text())
    got, want = results["fake"], results["cpu"]
    assert all(layer["surgery"] is not None for layer in got["layers"])
    assert counts["sync"] == analyze_reads(got), dict(counts)
    assert_same_numbers(got, want)


def assert_same_numbers(got, want, where="analysis"):
    """``got`` and ``want`` (JSON values) alike, their numbers within RTOL; timings and the run's path
    are left out."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for key in set(want) - {"seconds", "run"}:
            assert_same_numbers(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_numbers(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        np.testing.assert_allclose(got, want, **RTOL, err_msg=where)
    else:
        assert got == want, where


# gammadef is not here: its draws need cupyx.scipy.special, which the emulator does not have (its kernels'
# twins are tested on a GPU, tests/test_cuda.py::test_gamma_pieces).
@pytest.mark.parametrize("cfg", [dict(task="mae", mi_target=2.0), dict(task="fullvb"), dict(task="hvm", posterior="chain"), dict(task="sbn", iw_samples=3),
                                 dict(task="darn", iw_samples=3), dict(task="sbn", estimator="taylor"),
                                 dict(task="darn", estimator="taylor", likelihood="ar-bernoulli"),
                                 dict(task="vlae", latent=(6, 4), posterior=("chain", "diagonal")),
                                 dict(task="corex", posterior="chain", anchors=(1,), anchor_weight=0.5),
                                 dict(task="fullvb", weight_posterior="chain"), dict(task="sbndef", latent=(6, 4),
                                                                                    iw_samples=3),
                                 dict(task="poissondef", latent=(6, 4), iw_samples=3)],
                         ids=lambda cfg: "-".join(str(v) for v in cfg.values() if isinstance(v, str)))
def test_the_models_steps_read_the_host_twice_and_match_the_cpu(cfg, data, tmp_path):
    """The systems of the source papers as tasks: a step on the device reads the host twice (the norm, the
    reported means), uploads nothing after the first, and gives the CPU's numbers; so does validation."""
    cpu, dev = trainers(cfg, data, tmp_path)
    for k, rows in enumerate([slice(0, 40), slice(40, 80), slice(80, 120)]):
        with Counting() as counts:
            got = dev.step(dev.train_x[rows], 1.0)
        if k:
            assert counts["upload"] == 0 and counts["sync"] == SYNCS_PER_STEP, dict(counts)
        np.testing.assert_allclose(got, cpu.step(cpu.train_x[rows], 1.0), **RTOL)
    with Counting() as counts:
        valid = dev.validate()
    assert counts["upload"] == 0 and counts["sync"] == len(valid), dict(counts)  # one read per number
    for key, value in cpu.validate().items():
        np.testing.assert_allclose(valid[key], value, **RTOL, err_msg=key)


@pytest.mark.parametrize("cfg", [dict(task="sbn", iw_samples=3), dict(task="darn", iw_samples=3, latent=(6, 4)),
                                 dict(task="darn", estimator="taylor", likelihood="ar-bernoulli"),
                                 dict(task="sbndef", latent=(6, 4), iw_samples=3), dict(task="hvm", posterior="chain"),
                                 dict(task="vlae", latent=(6, 4), posterior=("chain", "diagonal")),
                                 dict(task="poissondef", latent=(6, 4), iw_samples=3)],
                         ids=lambda cfg: "-".join(str(v) for v in cfg.values() if isinstance(v, (str, tuple))))
def test_gvae_samples_draws_from_a_tasks_prior_on_the_device(cfg, data, tmp_path):
    """gvae sample's draws of the models read by their task's noise (binary units from uniforms, DARN's
    unit by unit, HVM's z, the ladder's every code, the Poisson DEF's counts): on the device with nothing
    uploaded and two reads (the means, the samples), the CPU's pictures. (The gamma DEF's draws need
    cupyx.scipy.special, which the emulator does not have.)"""
    from gvae.training.runs import prior_draws
    cpu, dev = trainers(cfg, data, tmp_path)
    pictures = []
    for t in (dev, cpu):
        device = "fake" if t is dev else "cpu"
        params, lik = t.params.views, t.model.likelihood
        out, rng = prior_draws(t.model, params, 2, 9, device, noise=t.task.reading.noise)
        lik.mean(out, params), lik.sample(out, params, rng)  # the model's constants (masks) go over once
        with Counting() as counts:
            out, rng = prior_draws(t.model, params, 5, 7, device, noise=t.task.reading.noise)
            pictures.append([to_host(lik.mean(out, params)), to_host(lik.sample(out, params, rng))])
        if t is dev:
            assert counts["upload"] == 0 and counts["sync"] == 2, dict(counts)
    for got, want in zip(*pictures):
        assert got.shape == (5, 36)
        np.testing.assert_allclose(got, want, **RTOL)


def test_a_gamma_prior_with_host_constants_stays_on_the_device():
    """The gamma DEF's prior, Gamma(z; a, b) with a and b host scalars: its value and its gradient in z on the
    device without a copy to it (CuPy's broadcast_to refused the scalar: the first GPU run of --task gammadef)."""
    z = np.random.default_rng(0).gamma(2.0, size=(5, 3)).astype(np.float32)
    a, b = np.float32(0.3), np.float32(1.5)
    with Counting() as counts:
        zd = to_device(z, "fake")
        counts.clear()
        value, grad = value_and_grad(lambda t: ops.sum(ops.gamma_log_prob(t, a, b)))(zd)
        assert counts["upload"] == 0, dict(counts)
    expected, expected_grad = value_and_grad(lambda t: ops.sum(ops.gamma_log_prob(t, a, b)))(z)
    np.testing.assert_allclose(float(value), expected, **RTOL)
    np.testing.assert_allclose(fake.to_host(grad), expected_grad, **RTOL)


@pytest.mark.parametrize("cfg", [dict(task="vcca", private=2), dict(task="darn", iw_samples=3),
                                 dict(task="vlae", latent=(6, 4), posterior=("chain", "diagonal"))],
                         ids=lambda cfg: "-".join(str(v) for v in cfg.values() if isinstance(v, str)))
def test_a_run_read_by_its_tasks_log_weights_evaluates_on_the_device(cfg, tmp_path):
    """gvae eval's importance sampling of a task's own log-weights (TaskWeights: a VCCA's pairs, DARN's binary
    units, the ladder's codes) on the device: the CPU's per-row numbers, nothing uploaded after the first
    pass, one host read per result."""
    from gvae.evaluation.task_weights import TaskWeights
    cpu, dev = trainers(cfg, make_data(n=120, d=784 if cfg["task"] == "vcca" else 36), tmp_path)
    sources = [(TaskWeights(t.task.reading), t.params.views, t.task.reading.eval_rows(t.inputs["test"])[:30])
               for t in (cpu, dev)]
    assert device_of(sources[1][2]) == "fake" and sources[1][2].shape == sources[0][2].shape
    evaluate(sources[1][0], sources[1][1], sources[1][2][:2], n_samples=2, ks=(), progress=False)  # constants go over
    with Counting() as counts:
        per, _, _ = evaluate(*sources[1], n_samples=6, ks=(1, 3), batch_size=7, progress=False)
    assert counts["upload"] == 0 and counts["sync"] == len(per), dict(counts)
    per_cpu, _, _ = evaluate(*sources[0], n_samples=6, ks=(1, 3), batch_size=7, progress=False)
    assert set(per) == {"elbo", "log_likelihood", "iwae_1", "iwae_3"}
    for key in per:
        np.testing.assert_allclose(per[key], per_cpu[key], **RTOL, err_msg=key)
