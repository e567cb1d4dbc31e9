"""Rate and distortion as controls: --beta B trains on D + B R (the beta-VAE; B = 1 is the ELBO) and
--target-rate S on D + |S - R| (Alemi et al., "Fixing a broken ELBO"), R = the batch's mean
KL(q(z|x) || p(z)), D = -mean log p(x|z); every weight of a loss bounded by the training dtype."""
import re

import numpy as np
import pytest

from gvae.cli import main
from gvae.io.files import read_jsonl
from gvae.model import VAE
from gvae.model.objectives import elbo_terms, training_loss
from gvae.training import TrainConfig, train
from gvae.training.config import LOSS_WEIGHTS, largest_rate_control, setting_fields
from tests.gradcheck import check_vjp
from tests.helpers import make_data


def _case(posterior="chain"):
    model = VAE(9, 6, [6], "elu", posterior=posterior, dtype=np.float64)  # extgrid: a 2 x 3 lattice
    params = model.new_params(np.random.default_rng(0)).views
    rng = np.random.default_rng(1)
    x = (rng.random((5, 9)) < 0.5).astype(np.float64)
    return model, params, x, rng.standard_normal((1, 5, model.noise_size))


@pytest.mark.parametrize("posterior", ["diagonal", "chain", "extgrid"])
def test_the_losses_are_distortion_plus_the_weighted_or_targeted_rate(posterior):
    model, params, x, eps = _case(posterior)
    rec, kl = elbo_terms(model, params, x, eps)
    D, R = -rec.mean(), kl.mean()
    for beta in (0.0, 0.3, 4.0):
        loss, aux = training_loss(params, model, x, eps, kl_weight=beta)
        assert loss == pytest.approx(D + beta * R, rel=1e-12)
        assert aux[0] == pytest.approx(-D - R, rel=1e-12) and aux[2] == pytest.approx(R, rel=1e-12)
    for S in (0.0, R / 2, 2 * R + 1):
        loss, aux = training_loss(params, model, x, eps, target_rate=S)
        assert loss == pytest.approx(D + abs(S - R), rel=1e-12)
        assert aux[0] == pytest.approx(-D - R, rel=1e-12)


@pytest.mark.parametrize("side", ["below", "above"])
def test_target_rate_gradient_against_finite_differences(side):
    model, params, x, eps = _case("extgrid")
    R = float(elbo_terms(model, params, x, eps)[1].mean())
    S = R * 0.5 if side == "below" else R * 2 + 1  # away from the kink at S = R
    check_vjp(lambda p: training_loss(p, model, x, eps, target_rate=S)[0], [params])


def test_beta_one_is_the_elbo_bit_for_bit(tmp_path):
    cfg = dict(latent=2, hidden=(8,), epochs=2, batch_size=50, seed=3, posterior="chain")
    a = train(TrainConfig.of(**cfg), make_data(), tmp_path / "a", progress=False, quiet=True)
    b = train(TrainConfig.of(**cfg, beta=1.0), make_data(), tmp_path / "b", progress=False, quiet=True)
    assert a["test_elbo"] == b["test_elbo"]
    assert read_jsonl(tmp_path / "a" / "metrics.jsonl")[-1]["train_elbo"] == \
        read_jsonl(tmp_path / "b" / "metrics.jsonl")[-1]["train_elbo"]


def test_beta_scales_the_warm_up_weight(tmp_path):
    cfg = TrainConfig.of(latent=2, hidden=(8,), epochs=2, batch_size=50, warmup=4, beta=0.5)
    train(cfg, make_data(), tmp_path, progress=False, quiet=True)
    assert [m["kl_weight"] for m in read_jsonl(tmp_path / "metrics.jsonl")] == [0.125, 0.25]


def test_the_rate_follows_its_target(tmp_path):
    """Two runs from the same start, targets 0.5 and 6 nats: the trained rates end near them and apart."""
    rates = {}
    for S in (0.5, 6.0):
        cfg = TrainConfig.of(latent=4, hidden=(32,), epochs=4, batch_size=20, lr=3e-3, seed=1, target_rate=S)
        train(cfg, make_data(), tmp_path / str(S), progress=False, quiet=True)
        rates[S] = read_jsonl(tmp_path / str(S) / "metrics.jsonl")[-1]["train_kl"]
    assert abs(rates[0.5] - 0.5) < 0.5 and abs(rates[6.0] - 6.0) < 1.5, rates


def test_a_target_rate_sets_the_weight_itself():
    for other in (dict(beta=2.0), dict(warmup=1.0), dict(iw_samples=5)):
        with pytest.raises(ValueError, match="target rate sets the rate's weight itself"):
            TrainConfig.of(target_rate=3.0, **other)


@pytest.mark.parametrize("flags,named", [(["--beta", "-1"], "--beta"), (["--beta", "inf"], "--beta"),
                                         (["--target-rate", "-2"], "--target-rate"),
                                         (["--target-rate", "nan"], "--target-rate")])
def test_bad_values_are_refused_naming_the_flag(flags, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", str(tmp_path / "run"), *flags])
    assert e.value.code == 2 and named in capsys.readouterr().err


# Rate controls beyond what the training dtype holds: refused in one line before any work (they trained to
# exit 3 with the advice "a lower learning rate", printing NumPy's overflow warnings even under --quiet).

@pytest.mark.parametrize("flags, named", [(["--beta", "1e308"], "beta 1e+308"), (["--beta", "1e20"], "beta 1e+20"),
                                          (["--target-rate", "1e308"], "target_rate 1e+308"),
                                          (["--mmd", "1e30"], "mmd 1e+30"),
                                          (["--task", "mae", "--mi-target", "3", "--mi-weight", "1e20"], "mi_weight 1e+20"),
                                          (["--task", "vcca", "--view-weight", "1e20"], "view_weight 1e+20"),
                                          (["--task", "vcca", "--private", "2", "--private-weight", "1e20"],
                                           "private_weight 1e+20")])
def test_rate_controls_beyond_the_dtype_are_one_line_before_any_work(flags, named, tmp_path, data_file, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(data_file), "--out", str(out), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"gvae: error: invalid training configuration: {named} is "
                                                   "beyond float32 training: ") and "at most 1e+13" in err, err
    assert not out.exists()


def test_every_weight_of_a_loss_is_declared_as_one_and_so_bounded():
    """The bound is derived from the fields' declarations (LOSS_WEIGHTS): every setting named a weight, the
    tasks' options included, is declared so, but anchor_weight, which lies in [0, 1]."""
    declared = {f.name for f in setting_fields().values() if f.metadata.get("parse") in LOSS_WEIGHTS}
    named = {name for name in setting_fields() if re.search(r"_weight\d*$", name)}
    assert named - declared == {"anchor_weight"} and declared == set(WEIGHTED)


# Each weight of a loss, with the settings its task needs.
WEIGHTED = {"beta": {}, "mmd": {}, "target_rate": {}, "mi_weight": dict(task="mae", mi_target=3.0),
            "view_weight": dict(task="vcca"), "private_weight": dict(task="vcca", private=2),
            "private_weight2": dict(task="vcca", private=2)}


def test_the_bound_follows_the_dtype():
    assert largest_rate_control("float32") == 1e13 and largest_rate_control("float64") == 1e148
    for name, task in WEIGHTED.items():
        TrainConfig.of(**{name: 1e13}, **task)  # the bound itself is taken
        with pytest.raises(ValueError, match=f"{name} 2e\\+13 is beyond float32 training"):
            TrainConfig.of(**{name: 2e13}, **task)
        TrainConfig.of(**{name: 1e30}, **task, dtype="float64")


@pytest.mark.parametrize("setting", [dict(beta=1e13, mmd=1e13), dict(target_rate=1e13)])
def test_training_at_the_bound_stays_finite(setting, tmp_path):
    """At the bound, with both weights there at once, no step has a non-finite loss or gradient."""
    cfg = TrainConfig.of(latent=4, hidden=(32,), epochs=2, batch_size=20, **setting)
    summary = train(cfg, make_data(), tmp_path, progress=False, quiet=True)
    assert summary["skipped_steps"] == 0 and np.isfinite(summary["test_elbo"])


def test_non_finite_steps_print_no_numpy_warnings(tmp_path, data_file, capsys):
    """The loop finds non-finite steps itself and says so in one line: NumPy's overflow and invalid-value
    warnings from the steps before it are not printed (--quiet printed them)."""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["train", "--data", str(data_file), "--limit", "80", "--latent", "3", "--hidden", "8", "--batch-size",
                   "40", "--epochs", "1", "--lr", "1e30", "--quiet", "--out", str(tmp_path / "run")])
    assert rc == 3 and "training diverged in epoch 1" in capsys.readouterr().err
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
