"""gvae.jax.band_head, a VAE step's sample, log-density and KL of a banded posterior in one kernel call and
one backward: the same values and gradients as the three made of the separate functions (eagerly, under
jit, vmap and grad, through buffer_callback and pure_callback), gradients against finite differences in
float64, the distribution's method, and the clear errors."""
import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="gvae.jax needs JAX (pip install gvae[jax])")
pytestmark = pytest.mark.usefixtures("jax_x64")

import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import gvae.jax as gj  # noqa: E402
from tests.band_reference import random_factor  # noqa: E402

STENCILS = {"diagonal": (0,), "chain": (0, 1), "extgrid": (0, 1, 2, 3, 4)}
N = 6
# (L's batch, mu's batch, eps's sample axes): shared factor, mu wider than L, eps with samples
SHAPES = {"plain": ((3,), (3,), ()), "samples": ((3,), (3,), (2,)), "wide_mu": ((), (4,), (2,)),
          "shared_factor": ((1,), (2, 3), ()), "mu_wider_than_eps": ((3,), (2, 3), None)}


def inputs(offsets, shape, seed=0, dtype="float64"):
    fbatch, mbatch, samples = SHAPES[shape]
    rng = np.random.default_rng(seed)
    L = jnp.asarray(random_factor(rng, fbatch, offsets, N, garbage=0.0), dtype=dtype)
    mu = jnp.asarray(rng.standard_normal(mbatch + (N,)), dtype=dtype)
    eps_batch = fbatch if samples is None else samples + np.broadcast_shapes(fbatch, mbatch)  # None: eps as L
    eps = jnp.asarray(rng.standard_normal(eps_batch + (N,)), dtype=dtype)
    return L, mu, eps


def separate(L, offsets, mu, eps):
    """The three as a VAE computes them with the separate functions."""
    q = gj.BandedPrecisionNormal(mu, L, offsets)
    z = mu + gj.band_solve_t(L, offsets, eps)
    return z, q.log_prob(z), q.kl_to_standard_normal()


def loss(f, offsets):
    def value(L, mu, eps):
        z, log_q, kl = f(L, offsets, mu, eps)
        return jnp.sin(z).sum() + 0.7 * jnp.cos(log_q).sum() + 1.3 * jnp.square(kl).sum()
    return value


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stencil", STENCILS)
def test_values_and_gradients_are_the_separate_functions(stencil, shape):
    offsets = STENCILS[stencil]
    L, mu, eps = inputs(offsets, shape)
    for got, want in zip(gj.band_head(L, offsets, mu, eps), separate(L, offsets, mu, eps)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    for got, want in zip(jax.grad(loss(gj.band_head, offsets), (0, 1, 2))(L, mu, eps),
                         jax.grad(loss(separate, offsets), (0, 1, 2))(L, mu, eps)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", ["samples", "wide_mu"])
def test_gradients_against_finite_differences(shape):
    offsets = STENCILS["extgrid"]
    L, mu, eps = inputs(offsets, shape, seed=3)
    check_grads(loss(gj.band_head, offsets), (L, mu, eps), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.fixture(params=["buffer_callback", "pure_callback"])
def callback(request, monkeypatch):
    if request.param == "pure_callback":
        from gvae.jax import bridge
        monkeypatch.setattr(bridge, "_buffer_callback", None)
    return request.param


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jit_equals_eager_and_its_gradient_is_the_separate_functions(dtype, callback):
    offsets = STENCILS["extgrid"]
    L, mu, eps = inputs(offsets, "samples", dtype=dtype)
    eager, traced = gj.band_head(L, offsets, mu, eps), jax.jit(lambda *a: gj.band_head(a[0], offsets, *a[1:]))(
        L, mu, eps)
    # the kernels' result bit for bit; log q and the KL are XLA's elementwise sums of the kernels' results,
    # which jit fuses (a last-place difference in float32)
    assert all(a.dtype == b.dtype == dtype for a, b in zip(eager, traced)) and np.array_equal(eager[0], traced[0])
    tol = 1e-10 if dtype == "float64" else 2e-4
    for a, b in zip(eager[1:], traced[1:]):
        np.testing.assert_allclose(a, b, rtol=tol)
    for got, want in zip(jax.jit(jax.grad(loss(gj.band_head, offsets), (0, 1, 2)))(L, mu, eps),
                         jax.grad(loss(separate, offsets), (0, 1, 2))(L, mu, eps)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("in_axes", [(0, 0, 0), (None, 0, 0), (0, None, None), (None, None, 0)])
def test_vmap_and_its_gradient_against_a_loop(in_axes, callback):
    """jit(vmap(grad)) with each argument mapped or shared: every row as its own call."""
    offsets = STENCILS["chain"]
    rng = np.random.default_rng(5)
    L = jnp.asarray(random_factor(rng, (3,), offsets, N, garbage=0.0))
    mu, eps = jnp.asarray(rng.standard_normal((3, N))), jnp.asarray(rng.standard_normal((3, 2, N)))
    args = [a if axis == 0 else a[0] for a, axis in zip((L, mu, eps), in_axes)]
    f = jax.jit(jax.vmap(jax.value_and_grad(loss(gj.band_head, offsets), (0, 1, 2)), in_axes))
    (values, grads) = f(*args)
    for i in range(3):
        row = [a[i] if axis == 0 else a for a, axis in zip(args, in_axes)]
        value, grad = jax.value_and_grad(loss(separate, offsets), (0, 1, 2))(*row)
        np.testing.assert_allclose(values[i], value, rtol=1e-10)
        for g, w in zip(grads, grad):
            np.testing.assert_allclose(g[i], w, rtol=1e-10, atol=1e-12)


def test_the_distributions_method_draws_and_scores_as_rsample_log_prob_and_kl():
    offsets = STENCILS["extgrid"]
    L, mu, _ = inputs(offsets, "plain")
    q = gj.BandedPrecisionNormal(mu, L, offsets)
    key = jax.random.PRNGKey(4)
    z, log_q, kl = q.rsample_log_prob_kl(key, (2,))
    np.testing.assert_allclose(z, q.rsample(key, (2,)), rtol=1e-12)
    np.testing.assert_allclose(log_q, q.log_prob(z), rtol=1e-12)
    np.testing.assert_allclose(kl, q.kl_to_standard_normal(), rtol=1e-12)
    assert z.shape == (2, 3, N) and log_q.shape == (2, 3) and kl.shape == (3,)


@pytest.mark.parametrize("call,error,match", [
    (lambda L, mu, eps: gj.band_head(L, (0, 1, 2, 3, 4), mu, eps[..., :5]), ValueError, "band_head: eps must have shape"),
    (lambda L, mu, eps: gj.band_head(L, (0, 1, 2, 3, 4), mu[..., :5], eps), ValueError, "band_head: mu must have shape"),
    (lambda L, mu, eps: gj.band_head(L, (0, 2), mu, eps), ValueError, "band_head: "),
    (lambda L, mu, eps: gj.band_head(L, (0, 1, 2, 3, 4), mu.astype("float32"), eps), TypeError, "band_head"),
    (lambda L, mu, eps: gj.band_head(-L, (0, 1, 2, 3, 4), mu, eps), ValueError, "strictly positive"),
])
def test_bad_input_raises_a_clear_error(call, error, match):
    L, mu, eps = inputs(STENCILS["extgrid"], "samples")
    with pytest.raises(error, match=match):
        call(L, mu, eps)
