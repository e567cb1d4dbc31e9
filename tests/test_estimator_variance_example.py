"""examples/estimator_variance.py's running moments: Welford's mean and variance (ddof 1) of the drawn
gradients equal NumPy's over the same draws kept whole."""
import importlib.util
from pathlib import Path

import numpy as np

from gvae import ops, value_and_grad

spec = importlib.util.spec_from_file_location(
    "estimator_variance", Path(__file__).resolve().parents[1] / "examples" / "estimator_variance.py")
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


def _loss(p, u):
    # a gradient that moves with the noise in every parameter, linearly in a and quadratically in b
    w = u.reshape(-1)
    return (ops.sum(ops.square(p["b"]) * w[:2]) + ops.sum(p["a"] * (w[2:5] * w[5:8])),)


def test_running_moments_equal_numpy_over_the_kept_draws():
    params = {"b": np.array([0.5, -1.5]), "a": np.array([1.0, 2.0, -3.0])}
    draws, shape = 37, (2, 2, 2)
    mean, var = example.gradient_moments(_loss, params, *shape, np.float64, draws, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    kept = []
    for _ in range(draws):
        u = rng.random(shape)
        grads = value_and_grad(lambda p: _loss(p, u)[0])(params)[1]
        kept.append(np.concatenate([grads[n].ravel() for n in sorted(params)]))
    kept = np.array(kept)
    assert kept.std(axis=0).min() > 0.01  # every parameter's gradient varies
    np.testing.assert_allclose(mean, kept.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(var, kept.var(axis=0, ddof=1), rtol=1e-10, atol=1e-15)
