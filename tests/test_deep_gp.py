"""The two-layer deep GP's bound (gvae.models.deep_gp.model.deep_gp_bound): the hidden layer's uncertain outputs enter
the collapsed bound as its exact expectation (checked against the quadratic's second differences and
against Monte Carlo), and the bound's gradients in every argument against central differences in float64."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gvae import ops
from gvae.models.deep_gp.model import collapsed_bound, deep_gp_bound, rbf_psi_statistics
from tests.gradcheck import check_vjp


def statistics(seed, n=6, d=2, m=4):
    rng = np.random.default_rng(seed)
    mu, S, Z = rng.standard_normal((n, d)), rng.uniform(0.1, 0.6, (n, d)), rng.standard_normal((m, d))
    ls, v = rng.uniform(0.7, 1.4, d), np.array(rng.uniform(0.6, 1.4))
    return rng, (ops.rbf_kernel(Z, Z, ls, v), *rbf_psi_statistics(mu, S, Z, ls, v))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2 ** 16))
def test_uncertain_outputs_add_the_quadratics_exact_expectation(seed):
    """E f(Y) = f(mu) + sum_np Y_var_np f''_np / 2 for the bound f, quadratic in Y; its second derivatives by
    central second differences, exact for a quadratic up to rounding."""
    rng, stats = statistics(seed)
    noise = np.array(rng.uniform(0.05, 0.5))
    mu, var = rng.standard_normal((6, 3)), rng.uniform(0.01, 0.5, (6, 3))

    def f(Y):
        return float(collapsed_bound(Y, *stats, noise))
    expected = f(mu)
    for i in np.ndindex(mu.shape):
        step = np.zeros_like(mu)
        step[i] = 1.0
        expected += 0.5 * var[i] * (f(mu + step) - 2 * f(mu) + f(mu - step))
    assert float(collapsed_bound(mu, *stats, noise, Y_var=var)) == pytest.approx(expected, rel=1e-10, abs=1e-9)


def test_uncertain_outputs_against_monte_carlo():
    rng, stats = statistics(7)
    noise, mu, var = np.array(0.2), rng.standard_normal((6, 3)), rng.uniform(0.05, 0.4, (6, 3))
    # The bound is a sum over Y's columns (independent outputs sharing the kernel), so one call on 100 draws
    # side by side is their sum: 400 calls give the values of 40,000 draws as 400 means of 100.
    draws = mu + np.sqrt(var) * rng.standard_normal((400, 100, 6, 3))
    values = np.array([float(collapsed_bound(np.concatenate(Y, axis=1), *stats, noise)) / 100 for Y in draws])
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(float(collapsed_bound(mu, *stats, noise, Y_var=var)) - values.mean()) < 5 * se


def problem(seed, n=5):
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal((n, 2)), rng.uniform(0.1, 0.5, (n, 2)), rng.standard_normal((n, 3)),
            rng.uniform(0.05, 0.4, (n, 3)), rng.standard_normal((n, 2)),
            rng.standard_normal((3, 2)), rng.uniform(0.8, 1.3, 2), np.array(1.1), np.array(0.15),
            rng.standard_normal((3, 3)), rng.uniform(0.8, 1.3, 3), np.array(0.9), np.array(0.25)]
    return args


def bound(mu_x, S_x, mu_h, S_h, Y, Z1, ls1, v1, s1, Z2, ls2, v2, s2):
    return deep_gp_bound(mu_x, S_x, mu_h, S_h, Y, [(Z1, ls1, v1, s1), (Z2, ls2, v2, s2)])


def test_the_bound_is_its_layers_and_the_terms_of_q():
    """F = g_Y(q(H)) + g_H(q(X), q(H)) + entropy(q(H)) - KL(q(X) || N(0, I)), each written out here."""
    mu_x, S_x, mu_h, S_h, Y, Z1, ls1, v1, s1, Z2, ls2, v2, s2 = problem(3)
    g_y = collapsed_bound(Y, ops.rbf_kernel(Z2, Z2, ls2, v2), *rbf_psi_statistics(mu_h, S_h, Z2, ls2, v2), s2)
    g_h = collapsed_bound(mu_h, ops.rbf_kernel(Z1, Z1, ls1, v1), *rbf_psi_statistics(mu_x, S_x, Z1, ls1, v1), s1,
                          Y_var=S_h)
    entropy = np.sum(0.5 * np.log(2 * np.pi * np.e * S_h))
    kl = 0.5 * np.sum(S_x + mu_x ** 2 - 1 - np.log(S_x))
    assert float(bound(*problem(3))) == pytest.approx(float(g_y + g_h) + entropy - kl, rel=1e-12)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2 ** 16))
def test_the_deep_gp_bounds_gradients(seed):
    args = problem(seed)
    for argnum in (0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12):
        check_vjp(bound, args, argnum=argnum, seed=seed, rtol=1e-5, atol=1e-7)


def _example():
    """examples/deep_gp_mnist.py as a module."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "deep_gp_mnist", Path(__file__).resolve().parents[1] / "examples" / "deep_gp_mnist.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


@pytest.mark.parametrize("flags, message", [
    (["--latent", "4", "--hidden", "3"], "--latent (4) must not exceed --hidden (3)"),
    (["--latent", "41", "--hidden", "41", "--images", "40"], "--hidden (41) must be below --images (40)"),
    (["--hidden", "40", "--images", "40"], "--hidden (40) must be below --images (40)"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--images", "1", "--inducing", "1"], "--hidden (10) must be below --images (1)"),
])
def test_the_examples_arguments_are_checked_before_any_work_in_one_line(tmp_path, capsys, flags, message):
    """They were tracebacks (a broadcasting error after the GP-LVM had trained, NumPy's seed, an SVD)."""
    with pytest.raises(SystemExit) as e:
        _example().parse_args(["--out", str(tmp_path / "run"), *flags])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and message in err


def test_the_example_resumed_equals_straight(tmp_path, monkeypatch):
    """examples/deep_gp_mnist.py: a run stopped at its checkpoint and resumed ends where a straight run ends."""
    example = _example()
    rng = np.random.default_rng(0)
    images = rng.random((50, 16))  # 30 to fit, 20 held out for the VAE
    monkeypatch.setattr("gvae.io.mnist.load_mnist", lambda: {"train": (images, np.zeros(50))})
    common = ["--images", "30", "--latent", "2", "--hidden", "3", "--inducing", "6", "--vae-hidden", "5",
              "--held-out-steps", "40"]
    example.main(example.parse_args(["--out", str(tmp_path / "straight"), "--steps", "200", "--vae-steps", "200",
                                     *common]))
    example.main(example.parse_args(["--out", str(tmp_path / "resumed"), "--steps", "100", "--vae-steps", "100",
                                     *common]))
    example.main(example.parse_args(["--out", str(tmp_path / "resumed"), "--steps", "200", "--vae-steps", "200",
                                     *common, "--picture", str(tmp_path / "latent.png")]))
    assert (tmp_path / "latent.png").stat().st_size > 1000
    for model in ("deep", "vae", "gplvm_held_out_200", "deep_held_out_200"):
        straight, resumed = (np.load(tmp_path / run / f"{model}.npz") for run in ("straight", "resumed"))
        assert sorted(straight.files) == sorted(resumed.files)
        for key in straight.files:
            np.testing.assert_array_equal(straight[key], resumed[key], err_msg=f"{model}: {key}")
    results = json.loads((tmp_path / "straight" / "results.json").read_text())
    assert set(results) >= {"GP-LVM", "deep GP", "VAE"} and math.isfinite(results["VAE"]["bound_per_image"])
    assert results["VAE"]["held_out_images"] == 20 and math.isfinite(results["VAE"]["held_out_bound_per_image"])
    for gp in ("GP-LVM", "deep GP"):  # fitted after the 200 steps, not the 100 of the stopped run
        assert results[gp]["held_out_images"] == 20 and math.isfinite(results[gp]["held_out_log_density_per_image"])
        assert np.load(tmp_path / "straight" / f"{'gplvm' if gp == 'GP-LVM' else 'deep'}_held_out_200.npz")["step"] == 40
    with pytest.raises(SystemExit, match="was run with"):
        example.main(example.parse_args(["--out", str(tmp_path / "resumed"), "--steps", "200", *common[:-5], "7"]))
    # a folder written before the VAE existed (its settings without the VAE's) gets the VAE added
    settings = tmp_path / "straight" / "settings.json"
    settings.write_text(json.dumps({k: v for k, v in json.loads(settings.read_text()).items()
                                    if not k.startswith("vae_") and k != "held_out_steps"}))
    (tmp_path / "straight" / "vae.npz").unlink()
    example.main(example.parse_args(["--out", str(tmp_path / "straight"), "--steps", "200", "--vae-steps", "200",
                                     *common]))
    redone, resumed = (np.load(tmp_path / run / "vae.npz") for run in ("straight", "resumed"))
    for key in redone.files:
        np.testing.assert_array_equal(redone[key], resumed[key], err_msg=key)
