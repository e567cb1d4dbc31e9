"""examples/jax_banded_vae.py, the JAX VAE a user would copy: its posterior is the one it names (the
extended grid's head scored against the dense Gaussian it stands for) and its jitted training steps lower
the loss, for every posterior (small generated data, float64; the MNIST run is an experiment)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="gvae.jax needs JAX (pip install gvae[jax])")
optax = pytest.importorskip("optax", reason="the example trains with optax (pip install gvae[test])")
pytestmark = pytest.mark.usefixtures("jax_x64")

spec = importlib.util.spec_from_file_location(
    "jax_banded_vae", Path(__file__).resolve().parents[1] / "examples" / "jax_banded_vae.py")
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


@pytest.mark.slow
def test_the_extended_grid_head_is_the_factor_of_the_precision_it_scores_with():
    params = example.init(jax.random.key(0), "extgrid", latent=6, hidden=(8,))
    x = (np.random.default_rng(0).random((3, 784)) < 0.5).astype(np.float64)
    q = example.posterior_of(params, x, "extgrid", 6)
    raw = np.asarray(example.mlp(params["enc"], x))[:, 6:].reshape(3, 5, 6)
    rows, cols = 2, 3  # lattice_shape(6)
    L = np.zeros((3, 6, 6))
    for i in range(6):  # extended grid on R x C, wrap-around masked
        r, c = divmod(i, cols)
        L[:, i, i] = np.logaddexp(0.0, raw[:, 0, i]) + example.FLOOR
        for k, (dr, dc) in enumerate([(0, -1), (-1, 1), (-1, 0), (-1, -1)], start=1):  # offsets 1, C-1, C, C+1
            if 0 <= r + dr < rows and 0 <= c + dc < cols:
                L[:, i, (r + dr) * cols + c + dc] = raw[:, k, i]
    mu = np.asarray(q.loc)
    z = np.random.default_rng(1).standard_normal((3, 6))
    u = np.einsum("bji,bj->bi", L, z - mu)  # L^T (z - mu)
    logdet = np.log(np.diagonal(L, axis1=1, axis2=2)).sum(-1)
    np.testing.assert_allclose(q.log_prob(z), logdet - 0.5 * (u ** 2).sum(-1) - 3 * np.log(2 * np.pi), rtol=1e-12)
    trace = np.trace(np.linalg.inv(L @ L.transpose(0, 2, 1)), axis1=1, axis2=2)
    np.testing.assert_allclose(q.kl_to_standard_normal(), 0.5 * (trace + (mu ** 2).sum(-1) - 6) + logdet, rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("posterior", example.POSTERIORS)
def test_training_steps_lower_the_loss_on_a_fixed_batch(posterior):
    params = example.init(jax.random.key(1), posterior, latent=6, hidden=(16,))
    optimizer = optax.adam(3e-3)
    state = optimizer.init(params)
    step = example.make_step(optimizer, posterior, 6)
    x = (np.random.default_rng(2).random((20, 784)) < 0.3).astype(np.float64)
    keys = jax.random.split(jax.random.key(3), 41)
    params, state, first = step(params, state, x, keys[0])
    for key in keys[1:]:
        params, state, last = step(params, state, x, key)
    assert np.isfinite(last) and last < first - 50


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--posterior", "grid"], ["--hidden", "0"]])
def test_bad_arguments_are_refused_with_a_message(argv, capsys):
    with pytest.raises(SystemExit):
        example.parse_args(argv)
    assert "error" in capsys.readouterr().err
