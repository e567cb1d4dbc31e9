"""SciPy's banded functions on JAX arrays: :mod:`gvae.linalg`'s six functions with SciPy's signatures and
banded storage, batched (leading axes of ``ab`` and ``b`` broadcast), differentiable in both arguments.

Each function flattens its batch with ``jnp.broadcast_to`` and ``reshape`` (:func:`gvae.linalg.batched_call`:
JAX's derivatives of those sum a broadcast argument's gradient back to its shape) and calls one
``jax.custom_vjp`` function on (F, rows, n) bands and (F, n, k) right-hand sides, whose forward and
backward run :mod:`gvae.linalg` and the rules of :mod:`gvae.rules.banded` as :mod:`gvae.jax.ops` runs its
kernels: directly on concrete arrays, in a callback under ``jit``, ``vmap`` and ``grad`` (a mapped axis
joins F). Reverse mode, to first order: ``grad``, ``vjp``, ``value_and_grad`` and their compositions with
``jit`` and ``vmap``; forward mode (``jvp``, ``jacfwd``) is refused by ``custom_vjp`` (a ``TypeError``),
and a gradient of a gradient meets a callback without a derivative.

float32 stays float32; any other real dtype is computed in float64 (float32 where x64 is off; float64 under
a transformation needs x64 enabled process-wide, as in :mod:`gvae.jax.ops`). ``overwrite_*`` are accepted
for SciPy's signatures; ``check_finite`` refuses NaN and inf, a matrix that is not positive definite is
:class:`gvae.linalg.LinAlgError` (eagerly; under ``jit`` inside a ``jax.errors.JaxRuntimeError``). Every
function also runs on GPU arrays through CuPy, as gvae.jax.ops's kernels do."""
import jax
import jax.numpy as jnp
import numpy as np

from .. import linalg
from ..kernels import array_module
from ..rules.banded import FUNCTIONS
from .bridge import _concrete, _like, _run_many

__all__ = ["solve_banded", "solveh_banded", "cholesky_banded", "cho_solve_banded", "matmul_banded",
           "logdeth_banded"]


def _kernel(f, ndims):
    """``f`` (a tuple of results) on arrays whose leading axes, beyond F, are vmap's (``ndims`` their own
    numbers of axes): those flattened into F, and the results given them back, in the inputs' dtype."""
    def kernel(*xs):
        lead = xs[0].shape[:xs[0].ndim - ndims[0] + 1]
        flat = [x.reshape((-1,) + x.shape[x.ndim - d + 1:]) for x, d in zip(xs, ndims)]
        xp = array_module(xs[0])
        return tuple(xp.asarray(o, dtype=xs[0].dtype).reshape(lead + o.shape[1:]) for o in f(*flat))
    return kernel


def _run(f, shapes, arrays):
    """``f`` on flattened (F, ...) arrays through :func:`gvae.jax.ops._run_many`, results of ``shapes``."""
    ndims = [a.ndim for a in arrays]
    return _run_many(_kernel(f, ndims), [(s, len(s) - 1) for s in shapes], list(arrays), [d - 1 for d in ndims],
                     spread=True)


def _function(name):
    """(the plain call, its custom_vjp) of ``name`` on flattened arrays: ``f(params, check_finite, arrays)``."""
    spec = FUNCTIONS[name]

    def plain(params, check, arrays):
        shape = spec.shape(*(a.shape for a in arrays))
        return _run(lambda *xs: (spec.forward(params, check, *xs),), [shape], arrays)[0]

    def fwd(params, check, arrays):
        out = plain(params, check, arrays)
        return out, (arrays, out)

    def bwd(params, check, res, g):
        arrays, out = res
        grads = _run(lambda *xs: tuple(spec.vjp(params, xs[:-2], *xs[-2:])), [a.shape for a in arrays],
                     (*arrays, out, g))
        return (tuple(_like(gr, a) for gr, a in zip(grads, arrays)),)

    op = jax.custom_vjp(plain, nondiff_argnums=(0, 1))
    op.defvjp(fwd, bwd)
    return plain, op


_FUNCTIONS = {name: _function(name) for name in FUNCTIONS}


def _apply(name, params, check_finite, ab, b=None, l_and_u=None):
    """``name`` on ``ab`` (and ``b``) as arrays of one floating dtype, the batch flattened and restored by
    :func:`gvae.linalg.batched_call`."""
    arrays = [x if isinstance(x, jax.Array) else jnp.asarray(np.asarray(x)) for x in (ab, b) if x is not None]
    if any(jnp.iscomplexobj(x) for x in arrays):
        raise TypeError(f"{name}: complex arrays are not taken; gvae's banded functions are real")
    dtype = jnp.float32 if all(x.dtype == jnp.float32 for x in arrays) else jax.dtypes.canonicalize_dtype(jnp.float64)
    arrays = [x.astype(dtype) for x in arrays]
    linalg.check_bands(name, arrays[0], l_and_u)
    plain, op = _FUNCTIONS[name]
    call = plain if _concrete(arrays) else op
    return linalg.batched_call(name, lambda *flat: call(tuple(params), bool(check_finite), flat), *arrays,
                               broadcast_to=jnp.broadcast_to)


def solve_banded(l_and_u, ab, b, overwrite_ab=False, overwrite_b=False, check_finite=True):
    """x with A x = b, A the general band matrix of ``l_and_u`` = (l, u) in ``ab`` (*batch, l + u + 1, n),
    b (*batch, n) or (*batch, n, k) (:func:`gvae.linalg.solve_banded`: LU with partial pivoting).
    Gradients: gb = A^-T g, gA = -gb x^T on the band."""
    l_and_u = linalg.band_counts("solve_banded", l_and_u)
    return _apply("solve_banded", l_and_u, check_finite, ab, b, l_and_u)


def solveh_banded(ab, b, overwrite_ab=False, overwrite_b=False, lower=False, check_finite=True):
    """x with A x = b, A symmetric positive definite in ``ab`` (*batch, u + 1, n), upper form or with
    ``lower=True`` lower form (:func:`gvae.linalg.solveh_banded`). Gradients: gb = A^-1 g, gA = -(gb x^T
    + x gb^T) on the stored triangle (once on the diagonal)."""
    return _apply("solveh_banded", (bool(lower),), check_finite, ab, b)


def cholesky_banded(ab, overwrite_ab=False, lower=False, check_finite=True):
    """The Cholesky factor of the symmetric positive definite ``ab`` (*batch, u + 1, n) in the same form: U
    with A = U^T U, or with ``lower=True`` L with A = L L^T (:func:`gvae.linalg.cholesky_banded`); its
    gradient through gvae's ``band_cholesky_grad``."""
    return _apply("cholesky_banded", (bool(lower),), check_finite, ab)


def cho_solve_banded(cb_and_lower, b, overwrite_b=False, check_finite=True):
    """x with A x = b from A's factor ``(cb, lower)`` as :func:`cholesky_banded` returns it
    (:func:`gvae.linalg.cho_solve_banded`); gradients in cb and b."""
    cb, lower = linalg.factor_and_form("cho_solve_banded", cb_and_lower)
    return _apply("cho_solve_banded", (bool(lower),), check_finite, cb, b)


def matmul_banded(l_and_u, ab, x, check_finite=True):
    """A x for the general band matrix A of ``l_and_u`` = (l, u) in ``ab`` (*batch, l + u + 1, n), x as b
    of :func:`solve_banded` (:func:`gvae.linalg.matmul_banded`). Gradients: gx = A^T g, gA = g x^T on the
    band."""
    l_and_u = linalg.band_counts("matmul_banded", l_and_u)
    return _apply("matmul_banded", l_and_u, check_finite, ab, x, l_and_u)


def logdeth_banded(ab, lower=False, check_finite=True):
    """log det A of the symmetric positive definite ``ab`` (*batch, u + 1, n), shape ``batch``
    (:func:`gvae.linalg.logdeth_banded`). Gradient: g A^-1 on the stored triangle (off-diagonals twice)."""
    return _apply("logdeth_banded", (bool(lower),), check_finite, ab)
