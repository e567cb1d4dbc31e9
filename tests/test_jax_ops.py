"""gvae.jax's functions: gradients against finite differences (jax.test_util.check_grads), jit + vmap +
grad composed against a dense jnp reference, the eager path against the callback path bit for bit, and
the clear errors. Float64 with x64 enabled per test and restored after it (nothing leaks to other test files)."""
import os
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="gvae.jax needs JAX (pip install gvae[jax])")
pytestmark = pytest.mark.usefixtures("jax_x64")

import jax.numpy as jnp  # noqa: E402
from jax.scipy.linalg import solve_triangular  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import gvae.jax as gj  # noqa: E402
from gvae.kernels import band as kband  # noqa: E402
from tests import band_reference as ref  # noqa: E402
from tests.band_reference import random_factor  # noqa: E402

# The named stencils on a 2 x 3 lattice (n = 6): small, so that every check stays cheap.
STENCILS = {"chain": (0, 1), "grid": (0, 1, 3), "extgrid": (0, 1, 2, 3, 4)}
N = 6
VECTOR = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec"]
FACTOR = ["band_logdet", "band_trace_inv", "band_diag_inv"]
# A factor batch and a right-hand side that broadcasts with it (larger, then smaller than the batch).
BATCHES = {"none": ((), (4,)), "one": ((3,), (2, 3)), "two": ((2, 3), (3,))}


def factor(offsets, batch=(), seed=0, garbage=np.nan):
    """A well-conditioned random band factor (float64); the slots outside the matrix hold ``garbage``."""
    return jnp.asarray(random_factor(np.random.default_rng(seed), batch, offsets, N, garbage=garbage))


def rhs(lead, seed=1):
    return jnp.asarray(np.random.default_rng(seed).normal(size=lead + (N,)))


def call(name, L, offsets, b=None):
    f = getattr(gj, name)
    if name == "band_logdet":
        return f(L)
    return f(L, offsets) if b is None else f(L, offsets, b)


def dense(L, offsets):
    """The dense lower-triangular (*batch, n, n) matrix of the band L, in jnp (differentiable)."""
    D = jnp.zeros(L.shape[:-2] + (N, N), L.dtype)
    for k, o in enumerate(offsets):
        i = np.arange(o, N)
        D = D.at[..., i, i - o].set(L[..., k, o:])
    return D


def reference(name, L, offsets, b=None):
    """The dense jnp counterpart of every function."""
    D = dense(L, offsets)
    if b is not None:
        shape = np.broadcast_shapes(L.shape[:-2], b.shape[:-1])
        D = jnp.broadcast_to(D, shape + (N, N))
        b = jnp.broadcast_to(b, shape + (N,))[..., None]
        Dt = jnp.swapaxes(D, -1, -2)
        return {"band_solve_t": lambda: solve_triangular(Dt, b, lower=False),
                "band_solve": lambda: solve_triangular(D, b, lower=True),
                "band_matvec_t": lambda: Dt @ b, "band_matvec": lambda: D @ b}[name]()[..., 0]
    if name == "band_logdet":
        return jnp.log(jnp.diagonal(D, axis1=-2, axis2=-1)).sum(-1)
    Dinv = solve_triangular(D, jnp.broadcast_to(jnp.eye(N), D.shape), lower=True)
    diag = jnp.square(Dinv).sum(-2)  # Sigma = D^-T D^-1: Sigma_ii = sum_j (D^-1)_ji^2
    return diag.sum(-1) if name == "band_trace_inv" else diag


# --------------------------------------------------------------------------------------------------
# Gradients against finite differences, every function, stencil and batch shape
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("stencil", STENCILS)
def test_gradients_against_finite_differences(stencil, batch):
    offsets = STENCILS[stencil]
    fbatch, lead = BATCHES[batch]
    # zeros outside the matrix: finite differences step every entry, and NaN + step is still NaN.
    L, b = factor(offsets, fbatch, garbage=0.0), rhs(lead)
    for name in VECTOR:
        check_grads(lambda L, b: call(name, L, offsets, b), (L, b), order=1, modes=["rev"])
    for name in FACTOR:
        check_grads(lambda L: call(name, L, offsets), (L,), order=1, modes=["rev"])


# --------------------------------------------------------------------------------------------------
# jit + vmap + grad composed, against the dense reference
# --------------------------------------------------------------------------------------------------

def _objective(fns, offsets):
    """A scalar that uses all seven functions of (L, b): f(L, b) = sum of their weighted sums."""
    def f(L, b):
        total = 0.0
        for i, name in enumerate(VECTOR + FACTOR):
            out = fns(name, L, offsets, b if name in VECTOR else None)
            total = total + (i + 1) * jnp.sin(out).sum()
        return total
    return f


@pytest.mark.parametrize("stencil", [s if s == "chain" else pytest.param(s, marks=pytest.mark.slow) for s in STENCILS])
def test_jit_vmap_grad_against_dense(stencil):
    """jit(vmap(grad)): a factor and right-hand sides per mapped row."""
    offsets = STENCILS[stencil]
    L, b = factor(offsets, (3,)), rhs((3, 2))  # b: 3 mapped rows of 2 right-hand sides each
    got, want = (jax.jit(jax.vmap(jax.grad(_objective(fns, offsets), (0, 1))))
                 for fns in (call, reference))
    for g, w in zip(got(L, b), want(L, b)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_jit_grad_vmap_shared_factor_against_dense():
    """jit(grad(sum of vmap)) with the factor shared by the mapped rows: its gradient summed over them."""
    offsets = STENCILS["extgrid"]
    L, b = factor(offsets), rhs((3, 2))
    got, want = (jax.jit(jax.grad(lambda L, b, f=_objective(fns, offsets): jax.vmap(f, (None, 0))(L, b).sum()))
                 for fns in (call, reference))
    np.testing.assert_allclose(got(L, b), want(L, b), rtol=1e-10, atol=1e-12)


def test_values_against_dense_with_broadcasting():
    """Values against tests/band_reference.py's NumPy dense references (no JAX compilation)."""
    refs = {"band_solve_t": ref.solve_t_ref, "band_solve": ref.solve_ref, "band_matvec_t": ref.matvec_t_ref,
            "band_matvec": ref.matvec_ref, "band_trace_inv": ref.trace_inv_ref, "band_diag_inv": ref.diag_inv_ref}
    for offsets in STENCILS.values():
        for fbatch, lead in BATCHES.values():
            L, b = factor(offsets, fbatch), rhs(lead)
            for name in VECTOR:
                np.testing.assert_allclose(call(name, L, offsets, b), refs[name](L, offsets, b), rtol=1e-12,
                                           atol=1e-12)
            np.testing.assert_allclose(gj.band_logdet(L), ref.logdet_ref(L), rtol=1e-12)
            for name in FACTOR[1:]:
                np.testing.assert_allclose(call(name, L, offsets), refs[name](L, offsets), rtol=1e-10)


# --------------------------------------------------------------------------------------------------
# The eager path and the callback path
# --------------------------------------------------------------------------------------------------

@pytest.fixture(params=["buffer_callback", "pure_callback"])
def callback(request, monkeypatch):
    """Traced calls through XLA's buffers (the CPU's path), or through pure_callback (where jaxlib has
    no buffer_callback, and off the CPU)."""
    if request.param == "pure_callback":
        from gvae.jax import bridge
        monkeypatch.setattr(bridge, "_buffer_callback", None)
    return request.param


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_eager_equals_callback_bitwise(dtype, callback):
    offsets = STENCILS["extgrid"]
    L, b = factor(offsets, (2, 3)).astype(dtype), rhs((3,)).astype(dtype)
    for name in VECTOR + FACTOR:
        args = (b,) if name in VECTOR else ()
        f = (lambda L, *b, name=name: call(name, L, offsets, *b))
        eager, traced = f(L, *args), jax.jit(f)(L, *args)
        assert eager.dtype == traced.dtype == dtype
        assert np.array_equal(eager, traced, equal_nan=True), name
        loss = (lambda L, *b, f=f: jnp.square(f(L, *b)).sum())
        argnums = tuple(range(1 + len(args)))
        for g, h in zip(jax.grad(loss, argnums)(L, *args), jax.jit(jax.grad(loss, argnums))(L, *args)):
            assert np.array_equal(g, h, equal_nan=True), name


def test_eager_calls_read_the_arrays_memory(monkeypatch):
    """The eager path hands the kernel a NumPy view of the jax.Array's own buffer (no copy)."""
    seen, kernel = [], kband.band_logdet
    monkeypatch.setattr(kband, "band_logdet",
                        lambda L, **kw: seen.append(L.__array_interface__["data"][0]) or kernel(L, **kw))
    L = factor(STENCILS["chain"], (3,))
    gj.band_logdet(L)
    assert seen == [L.unsafe_buffer_pointer()]


def test_jit_calls_read_and_write_xla_buffers(monkeypatch):
    """Under jit on the CPU the kernel reads the jit argument's own buffer (buffer_callback: no copy of
    the arguments), and its result lands in the array jit returns."""
    seen, kernel = [], kband.band_matvec
    monkeypatch.setattr(kband, "band_matvec", lambda L, offsets, x, **kw: seen.append(
        (L.__array_interface__["data"][0], x.__array_interface__["data"][0])) or kernel(L, offsets, x, **kw))
    L, x = factor(STENCILS["grid"], (3,)), rhs((3,))
    y = jax.jit(lambda L, x: gj.band_matvec(L, STENCILS["grid"], x))(L, x)
    assert seen == [(L.unsafe_buffer_pointer(), x.unsafe_buffer_pointer())]
    assert np.array_equal(y, kernel(np.asarray(L), STENCILS["grid"], np.asarray(x)))


def test_a_kernel_result_of_the_wrong_shape_is_refused_under_jit(monkeypatch):
    """The result is copied into XLA's buffer: one that would broadcast into it (or be cast) is an error,
    not silently spread (pure_callback checks the same)."""
    kernel = kband.band_logdet
    monkeypatch.setattr(kband, "band_logdet", lambda L, **kw: kernel(L, **kw)[..., :1])
    wrong = r"the kernel gave float64 \(1,\), XLA expected float64 \(3,\)"
    with pytest.raises(jax.errors.JaxRuntimeError, match=wrong):
        jax.jit(gj.band_logdet)(factor(STENCILS["chain"], (3,))).block_until_ready()


def test_reverse_mode_to_first_order_only():
    """custom_vjp over a callback: forward mode (jvp) and a gradient of a gradient are refused, as
    documented."""
    L = factor(STENCILS["chain"], garbage=0.0)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(gj.band_logdet, (L,), (L,))
    with pytest.raises(ValueError, match="(Buffer|Pure) callbacks do not support JVP"):
        jax.grad(lambda L: jax.grad(lambda L: gj.band_solve(L, (0, 1), L[0]).sum())(L).sum())(L)


def test_a_gpu_backend_warns_once_of_the_host_copy(monkeypatch):
    """No GPU here: the backend's name is patched, to check the one warning of the copy through the host."""
    from gvae.jax import bridge
    monkeypatch.setattr(bridge, "_backend", [])
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    L = factor(STENCILS["chain"])
    with pytest.warns(RuntimeWarning, match="on gpu every call copies its arguments to the host"):
        gj.band_logdet(L)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gj.band_logdet(L)


# --------------------------------------------------------------------------------------------------
# Clear errors
# --------------------------------------------------------------------------------------------------

def test_wrong_dtype_is_a_type_error():
    L = factor(STENCILS["chain"])
    with pytest.raises(TypeError, match="band_solve_t: b has dtype int"):
        gj.band_solve_t(L, (0, 1), jnp.ones(N, jnp.int32))
    with pytest.raises(TypeError, match="band_logdet: L has dtype int"):
        jax.jit(gj.band_logdet)(jnp.ones((2, N), jnp.int32))


def test_mixed_dtypes_are_a_type_error():
    L = factor(STENCILS["chain"])
    with pytest.raises(TypeError, match="band_matvec: arguments must share one dtype"):
        gj.band_matvec(L, (0, 1), jnp.ones(N, jnp.float32))


def test_wrong_shape_is_a_value_error():
    L = factor(STENCILS["chain"], (3,))
    with pytest.raises(ValueError, match=r"band_solve: b must have shape \(\*lead, n\) with n=6"):
        gj.band_solve(L, (0, 1), jnp.ones(N + 1))
    with pytest.raises(ValueError, match="band_matvec_t: x's batch shape"):
        jax.jit(lambda L, x: gj.band_matvec_t(L, (0, 1), x))(L, jnp.ones((2, N)))
    with pytest.raises(ValueError, match=r"band_diag_inv: L must have shape \(\*batch, K, n\)"):
        gj.band_diag_inv(jnp.ones(N), (0,))


def test_bad_offsets_are_a_value_error():
    with pytest.raises(ValueError, match="band_trace_inv"):
        gj.band_trace_inv(factor(STENCILS["chain"]), (0, 2, 1))


def test_non_positive_diagonal_eagerly_and_under_jit():
    """Eagerly the kernel's ValueError; under jit the same message inside a JaxRuntimeError (raised in
    the callback, when the compiled function runs)."""
    L = factor(STENCILS["chain"]).at[0, 2].set(-1.0)
    with pytest.raises(ValueError, match="band_logdet"):
        gj.band_logdet(L)
    with pytest.raises(jax.errors.JaxRuntimeError, match="ValueError: band_logdet"):
        jax.jit(gj.band_logdet)(L).block_until_ready()
    # check=False skips the verdict, as in the kernels
    assert np.isnan(gj.band_logdet(L, check=False))


# --------------------------------------------------------------------------------------------------
# Imports
# --------------------------------------------------------------------------------------------------

def _run(code):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
def test_imports_leave_jax_alone():
    """import gvae does not import JAX; import gvae.jax changes no JAX configuration."""
    _run("import sys, gvae, gvae.posteriors\n"
         "assert 'jax' not in sys.modules\n"
         "import jax; before = dict(jax.config.values)\n"
         "import gvae.jax\n"
         "after = dict(jax.config.values)\n"
         "assert before == after, {k: after[k] for k in after if before.get(k) != after[k]}\n")


@pytest.mark.slow
def test_gvae_torch_does_not_import_jax():
    pytest.importorskip("torch")
    _run("import sys, gvae.torch; assert 'jax' not in sys.modules")
