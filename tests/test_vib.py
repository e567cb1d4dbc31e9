"""The deep variational information bottleneck (--task classify): the softmax head's log-probability,
the objective E log q(y|z) - beta KL against a dense NumPy reference for every family, its gradient, the
12-sample evaluation, a run from the command line, and the refusals."""
import json

import numpy as np
import pytest

from gvae import ops
from gvae.cli import main
from gvae.io.files import read_jsonl
from gvae.model import FAMILIES
from gvae.models.vib.model import Classifier, predict, vib_loss, vib_terms
from gvae.training import TrainConfig, Trainer, checkpoint
from gvae.models.vib.scores import classifier_scores
from gvae.models.vib.task import labels_of
from tests.gradcheck import check_vjp
from tests.helpers import make_data


def _log_softmax_ref(logits):
    m = logits.max(axis=-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))


def test_categorical_log_prob_is_the_log_softmax_at_the_label_and_never_overflows():
    rng = np.random.default_rng(0)
    logits, y = rng.standard_normal((3, 5, 4)), rng.integers(0, 4, 5)
    ref = np.take_along_axis(_log_softmax_ref(logits), np.broadcast_to(y, (3, 5))[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(ops.categorical_log_prob(logits, y), ref, rtol=1e-13)
    wide = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4 - 1.0, 1e4]])  # exp(1e4) overflows unshifted
    np.testing.assert_allclose(ops.categorical_log_prob(wide, np.array([0, 1])), [0.0, -1.0 - np.log1p(np.exp(-1.0))],
                               rtol=1e-12)


@pytest.mark.parametrize("labels,bad", [([0, -1, 2], "-1"), ([0, 4, 2], "4"), ([-3, 9, 0], "-3")])
def test_categorical_log_prob_refuses_labels_outside_the_classes(labels, bad):
    """Label -1 once read the last class's log-probability silently, label C raised a bare IndexError."""
    logits = np.random.default_rng(0).standard_normal((2, 3, 4))
    with pytest.raises(ValueError, match=rf"^categorical_log_prob: labels must be class indices in 0\.\.3 .*"
                                         rf"got label {bad} "):
        ops.categorical_log_prob(logits, np.array(labels))
    from gvae.autodiff import value_and_grad  # the traced call checks them too
    with pytest.raises(ValueError, match=f"got label {bad} "):
        value_and_grad(lambda l_: ops.categorical_log_prob(l_, np.array(labels)).sum())(logits)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lead,b,c", [((), 1, 2), ((), 300, 10), ((4,), 90, 7)])
def test_the_categorical_kernels_against_scipy_recorded_and_replayed(lead, b, c, dtype):
    """The kernels' log softmax at the label and softmax against SciPy's in float64, the gradient against
    g ([c = y] - softmax); the same bits recorded, and a replay on new logits is a new call's."""
    from scipy.special import log_softmax
    from gvae import kernels
    from gvae.kernels.cpu import programs
    kernels.set_threads(2)
    try:
        rng = np.random.default_rng(b)
        logits = (rng.standard_normal(lead + (b, c)) * 8).astype(dtype)
        labels, g = rng.integers(0, c, b), rng.standard_normal(lead + (b,)).astype(dtype)
        log_p, probs = kernels.categorical_log_prob(logits, labels)
        ref = log_softmax(logits.astype(np.float64), axis=-1)
        tol = 40 * np.finfo(dtype).eps  # rounding of lse (|lse| up to some 40) carried into l_y - lse and exp
        np.testing.assert_allclose(log_p, np.take_along_axis(ref, np.broadcast_to(labels, lead + (b,))[..., None],
                                                             axis=-1)[..., 0], rtol=tol, atol=tol)
        np.testing.assert_allclose(probs, np.exp(ref), rtol=tol, atol=tol)
        onehot = np.arange(c) == np.broadcast_to(labels, lead + (b,))[..., None]
        grad = kernels.categorical_grad(g, labels, probs)
        np.testing.assert_allclose(grad, g[..., None] * (onehot - probs), rtol=tol, atol=tol)
        with programs.recording() as program:
            rec_log_p, rec_probs = kernels.categorical_log_prob(logits, labels)
            rec_grad = kernels.categorical_grad(g, labels, rec_probs)
        assert program.refused is None
        np.testing.assert_array_equal(rec_log_p, log_p)
        np.testing.assert_array_equal(rec_grad, grad)
        logits[...] = -logits
        program.run()
        again, again_probs = kernels.categorical_log_prob(logits, labels)
        np.testing.assert_array_equal(rec_log_p, again)
        np.testing.assert_array_equal(rec_grad, kernels.categorical_grad(g, labels, again_probs))
    finally:
        kernels.set_threads(1)


def test_categorical_log_prob_refuses_labels_that_are_not_integers():
    logits = np.zeros((3, 4))
    with pytest.raises(TypeError, match="^categorical_log_prob: labels must be integers .*got dtype float64"):
        ops.categorical_log_prob(logits, np.array([0.0, 1.0, 2.0]))
    assert ops.categorical_log_prob(logits, np.array([0, 3, 1], np.uint8)) == pytest.approx([-np.log(4)] * 3)
    assert ops.categorical_log_prob(np.zeros((0, 4)), np.zeros(0, int)).shape == (0,)


def _tiny(posterior, seed=0):
    """A float64 classifier on 7 inputs, 6 latent units (grid and extgrid: a 2 x 3 lattice), 3 classes."""
    model = Classifier(7, 6, [5], 3, "tanh", posterior, np.float64)
    params = model.new_params(np.random.default_rng(seed)).views
    rng = np.random.default_rng(seed + 1)
    x, y = rng.random((4, 7)), rng.integers(0, 3, 4)
    return model, params, x, y, rng.standard_normal((2, 4, 6))


@pytest.mark.parametrize("posterior", sorted(FAMILIES))
def test_the_objective_against_a_dense_numpy_reference(posterior):
    model, params, x, y, eps = _tiny(posterior)
    p = {k: np.asarray(v) for k, v in params.items()}
    head = np.tanh(x @ p["enc.W0"] + p["enc.b0"]) @ p["enc.W1"] + p["enc.b1"]
    q = model.family.split(head, 6)
    z = np.asarray(model.family.sample(q, eps))  # the family's sampler is tested in test_posteriors
    log_lik = np.take_along_axis(_log_softmax_ref(z @ p["cls.W0"] + p["cls.b0"]),
                                 np.broadcast_to(y, (2, 4))[..., None], axis=-1)[..., 0].mean(axis=0)
    P = model.family.precision(q)
    cov = np.linalg.inv(P)
    mu = np.asarray(q.mu)
    kl = 0.5 * (np.trace(cov, axis1=-2, axis2=-1) + (mu * mu).sum(-1) - 6 + np.linalg.slogdet(P)[1])
    for beta in (0.0, 1e-3, 0.7):
        loss, (objective, mean_log_lik, rate) = vib_loss(params, model, x, y, eps, beta=beta)
        assert loss == pytest.approx(np.mean(beta * kl - log_lik), rel=1e-9)
        assert objective == pytest.approx(-loss, rel=1e-12)
        assert mean_log_lik == pytest.approx(log_lik.mean(), rel=1e-9)
        assert rate == pytest.approx(kl.mean(), rel=1e-8)
    # The Monte Carlo rate averages log q(z|x) - log N(z; 0, I) over the same samples.
    mc = vib_terms(model, params, x, y, eps, kl="mc")[1]
    log_q = np.asarray(model.family.log_prob(q, z))
    log_p = -0.5 * (z * z).sum(-1) - 3 * np.log(2 * np.pi)
    np.testing.assert_allclose(mc, (log_q - log_p).mean(axis=0), rtol=1e-10)


@pytest.mark.parametrize("posterior,kl", [("diagonal", "analytic"), ("chain", "analytic"), ("grid", "mc"),
                                          ("extgrid", "analytic")])
def test_the_loss_gradient_against_finite_differences(posterior, kl):
    model, params, x, y, eps = _tiny(posterior, seed=3)
    check_vjp(lambda p_: vib_loss(p_, model, x, y, eps, kl, beta=0.3)[0], [params])


def test_the_evaluation_averages_the_softmax_over_the_samples():
    model, params, x, y, eps = _tiny("chain")
    probs, log_lik, rate = predict(model, params, x, y, eps)
    _, z = model.infer(params, x, eps)
    p_s = np.exp(_log_softmax_ref(np.asarray(model.logits(params, z))))
    np.testing.assert_allclose(probs, p_s.mean(axis=0), rtol=1e-12)
    # Batched over a set, the error counts the averaged softmax's argmax and the rate is the mean KL.
    data_x, data_y = np.random.default_rng(5).random((11, 7)), np.random.default_rng(6).integers(0, 3, 11)
    scores = classifier_scores(model, params, data_x, data_y, np.random.default_rng(7), beta=0.5, batch_size=4,
                               n_samples=12)
    noise = np.random.default_rng(7)
    wrong, rates, liks = 0, [], []
    for start in range(0, 11, 4):
        xb, yb = data_x[start:start + 4], data_y[start:start + 4]
        pb, lb, rb = predict(model, params, xb, yb, noise.standard_normal((12, len(xb), 6)))
        wrong += int((pb.argmax(-1) != yb).sum())
        rates += list(rb)
        liks += list(lb)
    assert scores["error"] == wrong / 11
    assert scores["rate"] == pytest.approx(np.mean(rates), rel=1e-12)
    assert scores["objective"] == pytest.approx(np.mean(liks) - 0.5 * np.mean(rates), rel=1e-12)


def _bars(tmp_path, n=400):
    """28 x 28 images of noise with one bright band of 4 rows, labelled by the band (6 classes), as the .npz
    that --data reads."""
    rng = np.random.default_rng(0)

    def draw(m):
        bands = rng.integers(0, 6, m)
        img = rng.random((m, 28, 28)).astype(np.float32) * 0.2
        for i, band in enumerate(bands):
            img[i, 4 * band:4 * band + 4, :] = 0.9
        return img.reshape(m, 784), bands
    splits = {"train": draw(n), "valid": draw(100), "test": draw(100)}
    path = tmp_path / "bars.npz"
    np.savez(path, **{f"{s}_{part}": splits[s][i] for s in splits for i, part in enumerate("xy")})
    return path


def test_a_classify_run_from_the_command_line(tmp_path, capsys):
    data, out = _bars(tmp_path), tmp_path / "run"
    argv = ["train", "--task", "classify", "--classes", "6", "--data", str(data), "--latent", "4", "--hidden",
            "32", "--posterior", "chain", "--beta", "1e-3", "--lr", "3e-3", "--batch-size", "20", "--out", str(out)]
    assert main([*argv, "--epochs", "4"]) == 0
    printed = capsys.readouterr().out
    assert "valid error" in printed and "valid rate" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "classify" and summary["test_samples"] == 12 and summary["beta"] == 1e-3
    assert summary["test_error"] < 0.3  # chance: 5/6; the bars' rows are plain to see
    assert summary["test_rate"] > 0 and summary["test_objective"] < 0
    assert f"test error {100 * summary['test_error']:.2f}%" in printed.splitlines()[-1]
    rows = read_jsonl(out / "metrics.jsonl")
    for key in ("train_objective", "train_log_lik", "train_rate", "valid_objective", "valid_error", "valid_rate"):
        assert key in rows[0]
    assert rows[-1]["train_log_lik"] > rows[0]["train_log_lik"]
    assert json.loads((out / "config.json").read_text())["task"] == "classify"
    _, meta = checkpoint.load(out / "checkpoint.npz")
    assert meta["config"]["task"] == "classify" and meta["config"]["classes"] == 6
    assert main(["train", "--resume", "--out", str(out), "--data", str(data), "--epochs", "5", "--quiet"]) == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    # The best epoch is the first with the lowest validation error, the test numbers its parameters'.
    errors = [r["valid_error"] for r in rows]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_epoch"] == 1 + errors.index(min(errors))
    assert summary["best_valid_error"] == pytest.approx(min(errors), abs=1e-15)
    capsys.readouterr()
    # What needs a decoder refuses a classifier, in one line.
    for command in (["eval", str(out), "--data", str(data)], ["sample", str(out)], ["analyze", str(out), "--data", str(data)],
                    ["plot", str(out), "--data", str(data)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "holds a classifier (--task classify)" in err and "summary.json" in err


def test_a_run_written_before_the_task_existed_is_a_generative_run():
    meta_config = {k: v for k, v in TrainConfig.of().flat().items() if k != "task"}
    config = checkpoint.config_of("config.json", {"config": meta_config})
    assert config.task == "generate" and config.flat() == TrainConfig().flat()


@pytest.mark.parametrize("settings,message", [
    (dict(latent=(4, 2)), "one stochastic layer"),
    (dict(likelihood="gaussian"), "no observation model p\\(x\\|z\\): leave --likelihood at the default"),
    (dict(iw_samples=5), "without --iw-samples"),
    (dict(mmd=1.0), "without --iw-samples, --target-rate, --mmd"),
    (dict(classes=1), "classes >= 2"),
    (dict(task="regress"), "task must be one of"),
])
def test_a_classify_configuration_refuses_what_it_cannot_train(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.of(**{"task": "classify", **settings})


def test_classes_belong_to_classify_runs():
    with pytest.raises(ValueError, match="classes applies to --task classify only"):
        TrainConfig.of(classes=6)


def test_the_labels_are_checked(tmp_path, capsys):
    data = make_data()
    assert [len(y) for y in labels_of(data, 10)] == [300, 100, 100]
    with pytest.raises(ValueError, match=r"the train labels run from 0 to 9, outside 0..4; give --classes"):
        labels_of(data, 5)
    unlabelled = {**data, "test": (data["test"][0],)}
    with pytest.raises(ValueError, match="needs labels, and the test split has none"):
        Trainer(TrainConfig.of(task="classify", latent=2, hidden=(8,)), unlabelled, tmp_path / "r", progress=False)
    floats = {**data, "train": (data["train"][0], data["train"][1].astype(np.float64) + 0.5)}
    with pytest.raises(ValueError, match="the train labels have dtype float64, expected integer class labels"):
        labels_of(floats, 10)
    bad = np.load(_bars(tmp_path))
    bad = {**bad, "valid_y": bad["valid_y"] + 6}
    np.savez(tmp_path / "bad.npz", **bad)
    assert main(["train", "--task", "classify", "--classes", "6", "--data", str(tmp_path / "bad.npz"), "--latent", "2",
                 "--hidden", "8", "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gvae: error: the valid labels run from 6 to 11, outside 0..5") and "\n" not in err


def test_the_best_epoch_is_the_first_with_the_lowest_validation_error(tmp_path):
    trainer = Trainer(TrainConfig.of(task="classify", latent=2, hidden=(8,), epochs=3, batch_size=100), make_data(),
                      tmp_path, progress=False, quiet=True)
    # The untrained model's numbers, then three epochs' whose best objective (epoch 3) is not the best error.
    values = iter([(-2.3, 0.9), (-1.0, 0.2), (-0.5, 0.3), (-0.4, 0.2)])
    trainer.validate = lambda: dict(zip(("valid_objective", "valid_error"), next(values)), valid_rate=1.0)
    summary = trainer.fit()
    assert summary["best_epoch"] == 1 and summary["best_valid_error"] == pytest.approx(0.2)
    assert trainer.state.initial_valid == -2.3  # the objective: divergence's yardstick


def test_signed_inputs_are_what_the_encoder_reads_in_every_split(tmp_path):
    """--input-range signed: every split's images enter as 2x - 1 (the training batches, validation and
    test alike); unit leaves them as they are."""
    data = make_data()
    signed = Trainer(TrainConfig.of(task="classify", latent=2, hidden=(8,), input_range="signed"), data, tmp_path / "s",
                     progress=False)
    unit = Trainer(TrainConfig.of(task="classify", latent=2, hidden=(8,)), data, tmp_path / "u", progress=False)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(signed.inputs[split][0], 2 * data[split][0] - 1)
        np.testing.assert_array_equal(unit.inputs[split][0], data[split][0])
    batch = next(iter(signed.task.batches(signed.inputs["train"], 50, np.random.default_rng(0))))
    x = signed.task.step_args(batch, np.random.default_rng(0), 1.0)[0]
    assert {row.tobytes() for row in x} <= {row.tobytes() for row in 2 * data["train"][0] - 1}


def test_training_on_train_and_valid_trains_on_both_and_tests_the_last_epoch(tmp_path):
    """--train-on train+valid: the training inputs are the training images then the validation images, with
    their labels; the validation split stays as it is (images inside the training set, so the summary
    tests the last epoch's parameters, as --test-params last says)."""
    data = make_data()
    config = TrainConfig.of(task="classify", latent=2, hidden=(8,), epochs=2, train_on="train+valid", test_params="last")
    trainer = Trainer(config, data, tmp_path, progress=False, quiet=True)
    for k in range(2):
        np.testing.assert_array_equal(trainer.inputs["train"][k], np.concatenate([data["train"][k], data["valid"][k]]))
        np.testing.assert_array_equal(trainer.inputs["valid"][k], data["valid"][k])
    summary = trainer.fit(events=[])
    assert summary["test_params"] == "last" and summary["tested_epoch"] == 2


def test_the_scale_offset_starts_the_diagonal_scales_that_much_lower():
    """scale_offset S: the same draws as without it, the encoder's last bias's scale half S lower, so at the
    start sigma = softplus(rho - S) + floor for the unshifted model's head rho; the means untouched."""
    shifted = Classifier(7, 6, [5], 3, "relu", dtype=np.float64, scale_offset=5.0)
    plain = Classifier(7, 6, [5], 3, "relu", dtype=np.float64)
    a, b = (m.new_params(np.random.default_rng(2)).views for m in (shifted, plain))
    for name in b:
        if name != "enc.b1":
            np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_array_equal(a["enc.b1"], np.concatenate([b["enc.b1"][:6], b["enc.b1"][6:] - 5.0]))
    x = np.random.default_rng(3).random((4, 7))
    q, _ = shifted.infer(a, x)
    h = np.maximum(x @ b["enc.W0"] + b["enc.b0"], 0) @ b["enc.W1"] + b["enc.b1"]
    np.testing.assert_allclose(q.sigma, np.logaddexp(0, h[:, 6:] - 5.0) + shifted.family.floor, rtol=1e-12)
    np.testing.assert_allclose(q.mu, plain.infer(b, x)[0].mu, rtol=1e-12)
    with pytest.raises(ValueError, match="diagonal posterior's scales, not the chain family's"):
        Classifier(7, 6, [5], 3, "relu", "chain", scale_offset=5.0)


def test_the_glorot_scheme_draws_each_weight_in_its_layers_interval_and_zero_biases():
    params = Classifier(784, 256, [1024, 1024], 10, "relu", init="glorot").new_params(np.random.default_rng(0)).views
    for name, value in params.items():
        if "b" in name.split(".")[1]:
            assert not np.any(value), name
        else:
            limit = np.sqrt(6 / sum(value.shape))
            assert limit * 0.99 < np.abs(value).max() <= limit, name


@pytest.mark.slow
def test_a_run_on_alemi_et_als_recipe_resumes_to_the_same_numbers(tmp_path):
    from tests.helpers import trained_straight_and_resumed
    _, summary, meta, _ = trained_straight_and_resumed(
        tmp_path, ["--task", "classify", "--latent", "4", "--hidden", "16", "16", "--activation", "relu",
                   "--input-range", "signed", "--scale-offset", "5", "--init", "glorot", "--train-on", "train+valid",
                   "--test-params", "last", "--polyak", "0.99", "--adam-beta1", "0.5", "--lr-decay", "0.97",
                   "--lr-decay-epochs", "2", "--batch-size", "40"])
    config = meta["config"]
    assert (config["input_range"], config["scale_offset"], config["init"], config["train_on"]) == (
        "signed", 5.0, "glorot", "train+valid")
    assert summary["tested_epoch"] == 3 and summary["test_samples"] == 12 and 0 <= summary["test_error"] <= 1


@pytest.mark.parametrize("flags,message", [
    (["--train-on", "train+valid"], "--train-on train+valid trains on the validation images, which then pick no "
                                    "epoch: give --test-params last, without --patience"),
    (["--train-on", "train+valid", "--test-params", "last", "--patience", "3"], "without --patience"),
    (["--scale-offset", "5", "--posterior", "chain"], "--scale-offset shifts the diagonal posterior's scales: use it "
                                                      "with --posterior diagonal"),
])
def test_the_recipes_flags_refuse_what_they_cannot_mean_in_one_line(tmp_path, capsys, flags, message):
    assert main(["train", "--task", "classify", "--out", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gvae: error: ") and message in err and "\n" not in err


@pytest.mark.parametrize("name,value,owner", [("input_range", "signed", "classify"), ("scale_offset", 5.0, "classify"),
                                              ("train_on", "train+valid", "classify"), ("code_dropout", 0.2, "vcca"),
                                              ("decoder_draws", "own", "vcca")])
def test_the_protocols_flags_belong_to_their_tasks(name, value, owner):
    with pytest.raises(ValueError, match=f"{name} applies to --task {owner} only"):
        TrainConfig.of(**{name: value})
