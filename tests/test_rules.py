"""gvae.rules: each formula in float64 against a dense NumPy reference, with the namespaces gvae's tape
(NumPy arrays through gvae.kernels), gvae.torch and gvae.jax pass it; unbroadcast; the shared checks and
their messages."""
import math
from functools import partial

import numpy as np
import pytest

from gvae import kernels
from gvae.rules import band, gaussian
from gvae.rules.broadcast import unbroadcast
from gvae.rules.checks import Checks, event_axis, offsets_tuple
from tests.band_reference import band_from_dense, dense_from_band, random_factor

OFFSETS = (0, 1, 4)
N = 12
# A factor batch (3,) and right-hand sides of (2, 3, n) (samples sharing a factor) and (n,) (broadcast).
LEADS = [(2, 3), ()]


def _numpy_gaussian_ops():
    """The Gaussian's operators on NumPy arrays, straight from the kernels."""
    return gaussian.GaussianOps(solve_t=partial(kernels.band_solve_t, check=False),
                                matvec_t=partial(kernels.band_matvec_t, check=False),
                                logdet=kernels.band_logdet, square=np.square, trace_inv=kernels.band_trace_inv,
                                diag_inv=kernels.band_diag_inv, log=np.log)


@pytest.fixture(params=["numpy", "torch", "jax"])
def front(request):
    """(band kernels, Gaussian operators, array maker) of one front end, as that front end builds them."""
    if request.param == "numpy":
        from gvae.ops.band import _KERNELS
        return _KERNELS, _numpy_gaussian_ops(), np.asarray
    if request.param == "torch":
        torch = pytest.importorskip("torch", reason="gvae.torch needs PyTorch")
        from gvae.torch.distribution import _OPS
        from gvae.torch.derivatives import _KERNELS
        return _KERNELS, _OPS, torch.as_tensor
    jax = pytest.importorskip("jax", reason="gvae.jax needs JAX")
    request.getfixturevalue("jax_x64")
    from gvae.jax.distribution import _OPS
    from gvae.jax.derivatives import _KERNELS
    return _KERNELS, _OPS, jax.numpy.asarray


def _factor(seed=0):
    return random_factor(np.random.default_rng(seed), (3,), OFFSETS, N, garbage=0.0)


def _normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


# --------------------------------------------------------------------------------------------------
# Band VJPs
# --------------------------------------------------------------------------------------------------

def _vjp_reference(name, L, v, g):
    """(gL, gv) of <g, op(L, v)> densely: gL the band of the dense gradient, gv at the broadcast shape."""
    D = dense_from_band(L, OFFSETS)
    Dt = np.swapaxes(D, -1, -2)
    v = np.broadcast_to(v, g.shape)
    apply = lambda A, x: (A @ x[..., None])[..., 0]  # noqa: E731
    solve = lambda A, x: np.linalg.solve(A, x[..., None])[..., 0]  # noqa: E731
    outer = lambda a, c: np.einsum("...i,...j->...ij", a, c).reshape((-1,) + D.shape).sum(0)  # noqa: E731
    if name == "band_solve_t":
        x, u = solve(Dt, v), solve(D, g)
        return band_from_dense(-outer(x, u), OFFSETS), u
    if name == "band_solve":
        x, u = solve(D, v), solve(Dt, g)
        return band_from_dense(-outer(u, x), OFFSETS), u
    if name == "band_matvec":
        return band_from_dense(outer(g, v), OFFSETS), apply(Dt, g)
    return band_from_dense(outer(v, g), OFFSETS), apply(D, g)


@pytest.mark.parametrize("name", list(band.VJP))
@pytest.mark.parametrize("lead", LEADS)
def test_band_vjp_against_dense(front, name, lead):
    kernels_of, _, array = front
    L, v = _factor(), _normal(lead + (N,), 1)
    g = _normal((2, 3, N) if lead else (3, N), 2)
    forward = getattr(kernels, name)(L, OFFSETS, v)
    args = (kernels_of, array(L), OFFSETS, array(v), array(forward), array(g))
    gL, gv = band.VJP[name](*args, True, True)
    want_L, want_v = _vjp_reference(name, L, v, g)
    np.testing.assert_allclose(np.asarray(gL), want_L, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(gv), want_v, rtol=1e-10, atol=1e-12)
    # What is not wanted is not computed.
    assert band.VJP[name](*args, False, False) == (None, None)


# --------------------------------------------------------------------------------------------------
# The Gaussian
# --------------------------------------------------------------------------------------------------

def _precision(L):
    D = dense_from_band(L, OFFSETS)
    return D @ np.swapaxes(D, -1, -2)


def test_log_density_against_dense(front):
    _, ops, array = front
    L, mu, y = _factor(), _normal((3, N), 1), _normal((4, 3, N), 2)
    P = _precision(L)
    r = y - mu
    want = (0.5 * np.linalg.slogdet(P)[1] - 0.5 * np.einsum("...i,...ij,...j->...", r, P, r)
            - 0.5 * N * math.log(2 * math.pi))
    got = gaussian.log_density(ops, array(L), OFFSETS, array(y), array(mu))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)


def test_entropy_against_dense(front):
    _, ops, array = front
    L = _factor()
    want = 0.5 * N * (1 + math.log(2 * math.pi)) - 0.5 * np.linalg.slogdet(_precision(L))[1]
    np.testing.assert_allclose(np.asarray(gaussian.entropy(ops, array(L))), want, rtol=1e-12)


@pytest.mark.parametrize("scale_shape", [(), (1,), (N,), (3, N)])
def test_kl_to_diagonal_against_dense(front, scale_shape):
    """Both branches: tr(Sigma) for one scale per distribution, diag(Sigma) for one per coordinate."""
    _, ops, array = front
    L, mu, loc = _factor(), _normal((3, N), 1), _normal((N,), 2)
    scale = np.random.default_rng(3).uniform(0.5, 2.0, size=scale_shape)
    Sigma = np.linalg.inv(_precision(L))
    s2 = np.broadcast_to(scale ** 2 if scale.ndim == 0 or scale.shape[-1] == N else scale[..., :1] ** 2, (3, N))
    d = mu - loc
    want = 0.5 * ((np.diagonal(Sigma, axis1=-2, axis2=-1) / s2).sum(-1) + (d * d / s2).sum(-1) - N
                  + np.log(s2).sum(-1) - np.linalg.slogdet(Sigma)[1])
    got = gaussian.kl_to_diagonal(ops, array(L), OFFSETS, array(mu), array(loc), array(scale))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)


def test_sample_against_dense(front):
    _, ops, array = front
    L, mu, eps = _factor(), _normal((3, N), 1), _normal((5, 3, N), 2)
    Dt = np.swapaxes(dense_from_band(L, OFFSETS), -1, -2)
    want = mu + np.linalg.solve(Dt, eps[..., None])[..., 0]
    got = gaussian.sample(ops, array(L), OFFSETS, array(mu), array(eps))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)


def test_the_models_operators_give_the_same_density_and_sample():
    """gvae.model.gaussian passes the tape's operators without the verdict on L: the same formulas."""
    from gvae.model.gaussian import band_log_density, band_sample
    L, mu, y = _factor(), _normal((3, N), 1), _normal((4, 3, N), 2)
    ops = _numpy_gaussian_ops()
    np.testing.assert_allclose(band_log_density(L, OFFSETS, y, mu), gaussian.log_density(ops, L, OFFSETS, y, mu),
                               rtol=1e-14)
    np.testing.assert_array_equal(band_sample(L, OFFSETS, mu, y), gaussian.sample(ops, L, OFFSETS, mu, y))


# --------------------------------------------------------------------------------------------------
# unbroadcast
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 4), (4,), (1, 4), (3, 1), (1, 1), (), (2, 1, 4)])
def test_unbroadcast_sums_added_and_stretched_axes(shape):
    g = _normal(np.broadcast_shapes((2, 3, 4), shape), 0)
    got = unbroadcast(g, shape)
    assert got.shape == shape
    # The sum of what reaches each entry: the gradient of broadcast_to wrt its input.
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, n in enumerate(shape) if n == 1 and g.shape[extra + i] != 1)
    np.testing.assert_allclose(got, g.sum(axis=axes, keepdims=True).reshape(shape), rtol=1e-14)


def test_unbroadcast_on_jax_arrays(jax_x64):
    """The same reductions on JAX's arrays (each library sums in its own order: equal to rounding)."""
    jnp = pytest.importorskip("jax.numpy", reason="gvae.jax needs JAX")
    g = _normal((5, 3, 4), 0)
    for shape in [(3, 4), (1, 4), (4,), (3, 1), ()]:
        got = unbroadcast(jnp.asarray(g), shape)
        assert got.shape == shape
        np.testing.assert_allclose(np.asarray(got), unbroadcast(g, shape), rtol=1e-14)


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------

CHECKS = Checks(np.ndarray, (np.dtype(np.float32), np.dtype(np.float64)), "float32 or float64", np.broadcast_shapes,
                ValueError)


@pytest.mark.parametrize("call, error, message", [
    (lambda: CHECKS.dtypes("op", [("L", [1.0])]), TypeError, r"^op: L must be a numpy.ndarray, got builtins.list$"),
    (lambda: CHECKS.dtypes("op", [("L", np.ones(2, np.int32))]), TypeError,
     r"^op: L has dtype int32, expected float32 or float64$"),
    (lambda: CHECKS.dtypes("op", [("L", np.ones(2)), ("b", np.ones(2, np.float32))]), TypeError,
     r"^op: arguments must share one dtype, got L float64, b float32$"),
    (lambda: CHECKS.factor("op", np.ones(3)), ValueError, r"^op: L must have shape \(\*batch, K, n\) with K, n >= 1"),
    (lambda: CHECKS.factor("op", np.ones((2, 0))), ValueError, r"^op: L must have shape"),
    (lambda: CHECKS.factor("op", np.ones((2, 5)), (0, 1, 2)), ValueError, r"^op: L holds K=2 diagonals"),
    (lambda: CHECKS.factor("op", np.ones((2, 5)), (0, 5)), ValueError, r"^op: offsets must be < n=5"),
    (lambda: CHECKS.vector("op", "b", np.ones((3, 2, 5)), np.ones(4)), ValueError,
     r"^op: b must have shape \(\*lead, n\) with n=5 \(L's last axis\), got \(4,\)$"),
    (lambda: CHECKS.vector("op", "b", np.ones((3, 2, 5)), np.ones((4, 5))), ValueError,
     r"^op: b's batch shape \(4,\) does not broadcast with the factor batch shape \(3,\)$"),
    (lambda: CHECKS.distribution("D", np.ones(5), np.ones((2, 4))), ValueError,
     r"^D: loc must have shape \(\*batch, n\) and factor \(\*batch, K, n\) with the same n"),
    (lambda: offsets_tuple("D", (0, 2, 1), 5, 3), ValueError, r"^D: offsets must be strictly increasing"),
    (lambda: event_axis("kl", [("scale", np.ones(3))], 5), ValueError,
     r"^kl: scale has 3 entries in its last axis, the event has n=5$"),
])
def test_checks_name_the_function_and_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_checks_pass_good_arguments():
    L = np.ones((3, 2, 5))
    CHECKS.dtypes("op", [("L", L), ("b", np.ones(5))])
    assert CHECKS.factor("op", L, (0, 1)) == (2, 5)
    assert CHECKS.vector("op", "b", L, np.ones((4, 1, 5))) == (4, 3, 5)
    assert CHECKS.distribution("D", np.ones((3, 5)), L) == (5, 2)
    assert offsets_tuple("D", np.array([0, 1]), 5, 2) == (0, 1) and type(offsets_tuple("D", (0, 1), 5, 2)[1]) is int
    event_axis("kl", [("loc", np.ones(())), ("scale", np.ones((3, 1))), ("x", np.ones(5))], 5)
