"""gvae.kernels.ar_bernoulli_draw: DARN's autoregressive binary draws against a NumPy loop, its refusals,
and the frequencies of its codes against the probabilities the layer's masked log-probability gives."""
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

from gvae import kernels


def reference(bias, W, u):
    z = np.zeros_like(bias)
    for r in range(bias.shape[0]):
        for i in range(bias.shape[1]):
            a = bias[r, i] + sum(W[i, j] * z[r, j] for j in range(i))
            z[r, i] = float(u[r, i] < 1 / (1 + np.exp(-a)))
    return z


@given(seed=st.integers(0, 2 ** 16), m=st.integers(1, 6), d=st.integers(1, 9),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_the_draws_are_the_sequential_rule(seed, m, d, dtype):
    rng = np.random.default_rng(seed)
    bias, W, u = (rng.standard_normal((m, d)) * 2).astype(dtype), rng.standard_normal((d, d)).astype(dtype), \
        rng.random((m, d)).astype(dtype)
    z = kernels.ar_bernoulli_draw(bias, W, u)
    assert z.dtype == dtype
    np.testing.assert_array_equal(z, reference(bias.astype(np.float64), W.astype(np.float64), u))


def test_the_codes_follow_the_layers_probabilities():
    """60,000 draws of a 3-unit layer: each code's frequency within 5 standard errors of prod_i
    Bernoulli(z_i; sigmoid(b_i + sum_{j<i} W_ij z_j)), the probability the masked log-probability scores."""
    rng = np.random.default_rng(1)
    b, W = rng.standard_normal(3), rng.standard_normal((3, 3)) * 2
    n = 60_000
    z = kernels.ar_bernoulli_draw(np.broadcast_to(b, (n, 3)).copy(), W, rng.random((n, 3)))
    for code in itertools.product([0.0, 1.0], repeat=3):
        c = np.array(code)
        logits = b + np.tril(W, -1) @ c
        p = float(np.exp((c * logits - np.logaddexp(0, logits)).sum()))
        freq = float(np.all(z == c, axis=1).mean())
        assert abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-4, (code, freq, p)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"expected W \(3, 3\)"):
        kernels.ar_bernoulli_draw(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="share one dtype"):
        kernels.ar_bernoulli_draw(np.zeros((2, 3)), np.zeros((3, 3), np.float32), np.zeros((2, 3)))
