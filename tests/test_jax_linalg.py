"""gvae.jax.linalg: values against gvae.linalg (itself against SciPy) in float32 and float64, every gradient and
tangent in both arguments against the dense computation in float64, jacfwd against jacrev, jit, vmap and
grad composed, and the refusals. Float64 with x64 enabled per test and restored after it."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

jax = pytest.importorskip("jax", reason="gvae.jax needs JAX (pip install gvae[jax])")

import jax.numpy as jnp  # noqa: E402

from gvae import linalg  # noqa: E402
from gvae.jax import linalg as jl  # noqa: E402
from tests.test_linalg import CASE, FUNCTIONS, call_banded, dense_reference, random_case  # noqa: E402

pytestmark = pytest.mark.usefixtures("jax_x64")
# Few examples: every new shape costs JAX compilations (jax_x64 sets a process-wide flag and restores it:
# the same for every example).
EXAMPLES = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.slow
@pytest.mark.parametrize("name", FUNCTIONS)
@EXAMPLES
@given(**CASE, float32=st.booleans())
def test_values_are_gvae_linalgs(name, n, lower, upper, batches, k, seed, float32):
    params, arrays = random_case(np.random.default_rng(seed), name, n, lower, upper, batches, k)
    if float32:
        arrays = [a.astype(np.float32) for a in arrays]
    got = call_banded(jl, name, params, *(jnp.asarray(a) for a in arrays))
    want = call_banded(linalg, name, params, *arrays)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6 if float32 else 1e-13, atol=1e-6 if float32 else 1e-13)


@pytest.mark.slow
@pytest.mark.parametrize("name", FUNCTIONS)
@EXAMPLES
@given(**CASE)
def test_gradients_are_the_dense_ones(name, n, lower, upper, batches, k, seed):
    """The gradients in ab and b of <w, f(ab, b)> (jax.grad, eagerly), against torch.linalg's autograd on the
    dense matrix of the band, float64 (broadcast batches summed back to each argument's shape). (PyTorch, not
    jax.numpy, for the reference: each new shape would otherwise compile XLA's dense solvers too, and XLA's
    compiler once crashed the test process doing so.)"""
    import torch
    rng = np.random.default_rng(seed)
    params, arrays = random_case(rng, name, n, lower, upper, batches, k)
    arrays = [jnp.asarray(a) for a in arrays]
    weights = jnp.asarray(rng.standard_normal(call_banded(jl, name, params, *arrays).shape))
    argnums = tuple(range(len(arrays)))
    got = jax.grad(lambda *a: jnp.sum(weights * call_banded(jl, name, params, *a)), argnums)(*arrays)
    tensors = [torch.tensor(np.asarray(a), requires_grad=True) for a in arrays]
    (torch.tensor(np.asarray(weights)) * dense_reference(torch, name, params, *tensors)).sum().backward()
    want = [t.grad.numpy() for t in tensors]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_jit_vmap_and_grad_composed():
    """jit(vmap(grad)) of a loss through solve_banded, logdeth_banded and cho_solve_banded equals the eager
    gradients of the batched call, and the dense ones."""
    rng = np.random.default_rng(0)
    params, (ab, b) = random_case(rng, "solve_banded", 6, 2, 1, ((3,), (3,)), 2)
    _, (spd,) = random_case(rng, "logdeth_banded", 6, 0, 2, ((3,), ()), None)

    def loss(ab, b, spd, f=jl):
        x = call_banded(jl, "solve_banded", params, ab, b) if f is jl else dense_reference(jnp, "solve_banded", params, ab, b)
        chol = jl.cholesky_banded(spd) if f is jl else None
        y = jl.cho_solve_banded((chol, False), x) if f is jl else dense_reference(jnp, "solveh_banded", (False,), spd, x)
        logdet = jl.logdeth_banded(spd) if f is jl else dense_reference(jnp, "logdeth_banded", (False,), spd)
        return jnp.sum(y ** 2) + logdet

    grad = jax.grad(loss, argnums=(0, 1, 2))
    got = jax.jit(jax.vmap(grad))(ab, b, spd)
    eager = jax.grad(lambda *a: jnp.sum(jax.vmap(loss)(*a)), argnums=(0, 1, 2))(ab, b, spd)
    dense = jax.vmap(jax.grad(lambda *a: loss(*a, f=None), argnums=(0, 1, 2)))(ab, b, spd)
    for g, e, d in zip(got, eager, dense):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g, d, rtol=1e-9, atol=1e-9)


def test_float32_under_jit_grad_and_jvp():
    rng = np.random.default_rng(1)
    params, (ab, b) = random_case(rng, "solveh_banded", 7, 0, 1, ((2,), (2,)), None)
    ab32, b32 = jnp.asarray(ab, jnp.float32), jnp.asarray(b, jnp.float32)
    f = jax.jit(jax.value_and_grad(lambda a, c: jnp.sum(jl.solveh_banded(a, c)) + jnp.sum(jl.logdeth_banded(a)),
                                   argnums=(0, 1)))
    value, grads = f(ab32, b32)
    value64, grads64 = f(jnp.asarray(ab), jnp.asarray(b))
    assert value.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in grads)
    np.testing.assert_allclose(value, value64, rtol=1e-5)
    for g, g64 in zip(grads, grads64):
        np.testing.assert_allclose(g, g64, rtol=1e-4, atol=1e-5)
    jvp = jax.jit(lambda a, d: jax.jvp(jl.cholesky_banded, (a,), (d,))[1])
    tangent = jvp(ab32, jnp.ones_like(ab32))
    assert tangent.dtype == jnp.float32
    np.testing.assert_allclose(tangent, jvp(jnp.asarray(ab), jnp.ones(ab.shape)), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", FUNCTIONS)
@EXAMPLES
@given(**CASE)
def test_forward_mode_is_the_dense_jvp(name, n, lower, upper, batches, k, seed):
    """jax.jvp in ab and b together (eagerly), against torch.func.jvp of the dense computation, float64."""
    import torch
    rng = np.random.default_rng(seed)
    params, arrays = random_case(rng, name, n, lower, upper, batches, k)
    tangents = [rng.standard_normal(a.shape) for a in arrays]
    _, got = jax.jvp(lambda *a: call_banded(jl, name, params, *a), tuple(jnp.asarray(a) for a in arrays),
                     tuple(jnp.asarray(t) for t in tangents))
    _, want = torch.func.jvp(lambda *a: dense_reference(torch, name, params, *a),
                             tuple(torch.from_numpy(a) for a in arrays), tuple(torch.from_numpy(t) for t in tangents))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_jacfwd_is_jacrev_under_jit_and_vmap(name):
    """Forward and reverse mode agree to rounding, jitted, and vmap of jvp is the batched jvp (a mapped axis
    joins the batch of the tangent's rule)."""
    rng = np.random.default_rng(4)
    params, arrays = random_case(rng, name, 5, 1, 2, ((3,), (3,)), 2)
    arrays = [jnp.asarray(a) for a in arrays]
    argnums = tuple(range(len(arrays)))

    def f(*a):
        return call_banded(jl, name, params, *a)
    for fwd, rev in zip(jax.jit(jax.jacfwd(f, argnums))(*arrays), jax.jit(jax.jacrev(f, argnums))(*arrays)):
        np.testing.assert_allclose(fwd, rev, rtol=1e-12, atol=1e-12)
    tangents = tuple(jnp.asarray(rng.standard_normal(a.shape)) for a in arrays)
    mapped = jax.vmap(lambda a, t: jax.jvp(f, a, t)[1])(tuple(arrays), tangents)
    np.testing.assert_allclose(mapped, jax.jvp(f, tuple(arrays), tangents)[1], rtol=1e-13, atol=1e-13)


def test_second_order_is_refused_in_one_line():
    ab = jnp.asarray(random_case(np.random.default_rng(2), "logdeth_banded", 4, 0, 1, ((), ()), None)[1][0])
    for second in (jax.hessian, lambda f: jax.grad(lambda a: jnp.sum(jax.grad(f)(a)))):
        with pytest.raises(NotImplementedError, match="derivative of logdeth_banded's derivatives") as info:
            second(lambda a: jnp.sum(jl.logdeth_banded(a)))(ab)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("call_, error, phrase", [
    (lambda: jl.solve_banded((1, 1), jnp.ones((2, 5)), jnp.ones(5)), ValueError, "ab has 2 rows, but l = 1 and u = 1 need 3"),
    (lambda: jl.matmul_banded((1, -1), jnp.ones((1, 5)), jnp.ones(5)), ValueError, "l and u must be ints >= 0"),
    (lambda: jl.solveh_banded(jnp.ones((2, 4)), jnp.ones(5)), ValueError, "does not match ab's n = 4"),
    (lambda: jl.logdeth_banded(jnp.ones((2, 4), jnp.complex64)), TypeError, "complex"),
    (lambda: jl.logdeth_banded(jnp.array([[0.5, 0.5], [1.0, -4.0]])), linalg.LinAlgError, "not positive definite"),
    (lambda: jax.jit(lambda a, c: jl.solveh_banded(a, c))(jnp.ones((2, 2, 3)), jnp.ones((3, 3))), ValueError,
     "do not broadcast"),
    (lambda: jl.eigvals_banded(jnp.ones((2, 3)), select="i", select_range=(0, 1)), ValueError, "take select='a'"),
])
def test_refusals_in_one_line(call_, error, phrase):
    with pytest.raises(error) as info:
        call_()
    assert phrase in str(info.value) and "\n" not in str(info.value)
