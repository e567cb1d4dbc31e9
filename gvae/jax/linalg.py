"""SciPy's banded functions on JAX arrays: :mod:`gvae.linalg`'s six functions and :func:`eigvals_banded` with
SciPy's signatures and banded storage, batched (leading axes of ``ab`` and ``b`` broadcast), differentiable in
both arguments, in forward and reverse mode.

Each function flattens its batch with ``jnp.broadcast_to`` and ``reshape`` (:func:`gvae.linalg.batched_call`:
JAX's derivatives of those sum a broadcast argument's gradient back to its shape) and calls one
``jax.custom_jvp`` function on (F, rows, n) bands and (F, n, k) right-hand sides, which runs
:mod:`gvae.linalg` as :mod:`gvae.jax.bridge` runs the kernels: directly on concrete arrays, in a callback
under ``jit``, ``vmap`` and the derivatives (a mapped axis joins F). Its tangent is the primitive
``gvae_linalg_tangent`` (the JVP rule of :mod:`gvae.rules.banded`, linear in the tangents), whose transpose
is the primitive ``gvae_linalg_cotangent`` (the VJP rule): ``jvp`` and ``jacfwd`` call the first, ``grad``,
``vjp`` and ``jacrev`` the second, one callback each, and both compose with ``jit`` and ``vmap``. To first
order: a derivative of a derivative (``hessian``, ``grad`` of ``grad``) raises ``NotImplementedError``.

float32 stays float32; any other real dtype is computed in float64 (float32 where x64 is off; float64 under
a transformation needs x64 enabled process-wide, as in :mod:`gvae.jax.bridge`). ``overwrite_*`` are accepted
for SciPy's signatures; ``check_finite`` refuses NaN and inf, a matrix that is not positive definite is
:class:`gvae.linalg.LinAlgError` (eagerly; under ``jit`` inside a ``jax.errors.JaxRuntimeError``). Every
function but :func:`eigvals_banded` (LAPACK's, on the host) also runs on GPU arrays through CuPy, as
gvae.jax.bridge's calls do."""
import jax
import jax.numpy as jnp
import numpy as np

from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from .. import linalg
from ..kernels import array_module
from ..rules.banded import FUNCTIONS
from .bridge import _concrete, _like, _run_many

__all__ = ["solve_banded", "solveh_banded", "cholesky_banded", "cho_solve_banded", "matmul_banded",
           "logdeth_banded", "eigvals_banded"]


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
    """``f`` on flattened (F, ...) arrays through :func:`gvae.jax.bridge._run_many`, results of ``shapes``."""
    ndims = [a.ndim for a in arrays]
    return _run_many(_kernel(f, ndims), [(s, len(s) - 1) for s in shapes], list(arrays), [d - 1 for d in ndims],
                     spread=True)


def _tangent(*arrays, name, params):
    """The output's tangent of ``name`` from (*inputs, output, *tangents): its JVP rule (linear in the
    tangents)."""
    spec = FUNCTIONS[name]
    k = len(spec.inputs)
    return _run(lambda *xs: (spec.jvp(params, xs[:k], xs[k], xs[k + 1:]),), [arrays[k].shape], arrays)[0]


def _cotangent(*arrays, name, params):
    """The inputs' gradients of ``name`` from (*inputs, output, g): its VJP rule (linear in g), each gradient
    with its input's manual axis type (:func:`gvae.jax.bridge._like`)."""
    spec = FUNCTIONS[name]
    inputs = arrays[:len(spec.inputs)]
    grads = _run(lambda *xs: tuple(spec.vjp(params, xs[:-2], *xs[-2:])), [a.shape for a in inputs], arrays)
    return [_like(gr, a) for gr, a in zip(grads, inputs)]


# The JVP and VJP rules as two primitives, transposes of each other in the tangents and in g: forward mode
# calls the first, reverse mode transposes it into the second (one callback each way, as a custom_vjp's).
_TANGENT = Primitive("gvae_linalg_tangent")
_COTANGENT = Primitive("gvae_linalg_cotangent")
_COTANGENT.multiple_results = True


def _tangent_transpose(ct, *args, name, params):
    k = len(FUNCTIONS[name].inputs)
    ct = ad.instantiate_zeros(ct)
    grads = _COTANGENT.bind(*args[:k + 1], ct, name=name, params=params)
    return [None] * (k + 1) + [g if ad.is_undefined_primal(t) else None for g, t in zip(grads, args[k + 1:])]


def _batch(primitive):
    """vmap's rule: a mapped axis joins F, the leading axis of every argument and result (an unmapped
    argument broadcast along it)."""
    def rule(args, dims, **params):
        B = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
        args = [jnp.broadcast_to(a, (B,) + a.shape) if d is None else jnp.moveaxis(a, d, 0)
                for a, d in zip(args, dims)]
        F = args[0].shape[1]
        out = primitive.bind(*(a.reshape((B * F,) + a.shape[2:]) for a in args), **params)
        if primitive.multiple_results:
            return [o.reshape((B, F) + o.shape[1:]) for o in out], [0] * len(out)
        return out.reshape((B, F) + out.shape[1:]), 0
    return rule


def _second_order(primals, tangents, *, name, params):
    raise NotImplementedError(f"gvae.jax.linalg: a derivative of {name}'s derivatives (second order) is not "
                              "offered: the rules in gvae.rules.banded have no derivatives of their own")


for _primitive, _impl, _outputs in ((_TANGENT, _tangent, lambda avals, k: avals[k]),
                                    (_COTANGENT, _cotangent, lambda avals, k: list(avals[:k]))):
    _primitive.def_impl(_impl)
    _primitive.def_abstract_eval(lambda *avals, name, params, outputs=_outputs:
                                 outputs(avals, len(FUNCTIONS[name].inputs)))
    mlir.register_lowering(_primitive, mlir.lower_fun(_impl, multiple_results=_primitive.multiple_results))
    batching.primitive_batchers[_primitive] = _batch(_primitive)
    ad.primitive_jvps[_primitive] = _second_order
ad.primitive_transposes[_TANGENT] = _tangent_transpose


def _function(name):
    """(the plain call, its custom_jvp) of ``name`` on flattened arrays: ``f(params, check_finite, arrays)``."""
    spec = FUNCTIONS[name]

    def plain(params, check, arrays):
        shape = spec.shape(*(a.shape for a in arrays))
        return _run(lambda *xs: (spec.forward(params, check, *xs),), [shape], arrays)[0]

    def jvp(params, check, primals, tangents):
        (arrays,), (darrays,) = primals, tangents
        out = op(params, check, arrays)  # (op, not plain: a second derivative meets _second_order's refusal)
        return out, _TANGENT.bind(*arrays, out, *darrays, name=name, params=params)

    op = jax.custom_jvp(plain, nondiff_argnums=(0, 1))
    op.defjvp(jvp)
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
    Derivatives: gb = A^-T g, gA = -gb x^T on the band; dx = A^-1 (db - dA x)."""
    l_and_u = linalg.band_counts("solve_banded", l_and_u)
    return _apply("solve_banded", l_and_u, check_finite, ab, b, l_and_u)


def solveh_banded(ab, b, overwrite_ab=False, overwrite_b=False, lower=False, check_finite=True):
    """x with A x = b, A symmetric positive definite in ``ab`` (*batch, u + 1, n), upper form or with
    ``lower=True`` lower form (:func:`gvae.linalg.solveh_banded`). Derivatives: gb = A^-1 g, gA = -(gb x^T
    + x gb^T) on the stored triangle (once on the diagonal); dx = A^-1 (db - dA x)."""
    return _apply("solveh_banded", (bool(lower),), check_finite, ab, b)


def cholesky_banded(ab, overwrite_ab=False, lower=False, check_finite=True):
    """The Cholesky factor of the symmetric positive definite ``ab`` (*batch, u + 1, n) in the same form: U
    with A = U^T U, or with ``lower=True`` L with A = L L^T (:func:`gvae.linalg.cholesky_banded`).
    Derivatives: the factor's gradient (gvae's ``band_cholesky_grad``); dL from dA = dL L^T + L dL^T, column
    by column (n sequential steps)."""
    return _apply("cholesky_banded", (bool(lower),), check_finite, ab)


def cho_solve_banded(cb_and_lower, b, overwrite_b=False, check_finite=True):
    """x with A x = b from A's factor ``(cb, lower)`` as :func:`cholesky_banded` returns it
    (:func:`gvae.linalg.cho_solve_banded`); derivatives in cb and b."""
    cb, lower = linalg.factor_and_form("cho_solve_banded", cb_and_lower)
    return _apply("cho_solve_banded", (bool(lower),), check_finite, cb, b)


def matmul_banded(l_and_u, ab, x, check_finite=True):
    """A x for the general band matrix A of ``l_and_u`` = (l, u) in ``ab`` (*batch, l + u + 1, n), x as b
    of :func:`solve_banded` (:func:`gvae.linalg.matmul_banded`). Derivatives: gx = A^T g, gA = g x^T on the
    band; dy = dA x + A dx."""
    l_and_u = linalg.band_counts("matmul_banded", l_and_u)
    return _apply("matmul_banded", l_and_u, check_finite, ab, x, l_and_u)


def logdeth_banded(ab, lower=False, check_finite=True):
    """log det A of the symmetric positive definite ``ab`` (*batch, u + 1, n), shape ``batch``
    (:func:`gvae.linalg.logdeth_banded`). Derivatives: g A^-1 on the stored triangle (off-diagonals twice);
    d log det A = tr(A^-1 dA)."""
    return _apply("logdeth_banded", (bool(lower),), check_finite, ab)


def eigvals_banded(a_band, lower=False, overwrite_a_band=False, select="a", select_range=None, check_finite=True):
    """Every eigenvalue (*batch, n), ascending, of the symmetric ``a_band`` (*batch, u + 1, n) in either form
    (:func:`gvae.linalg.eigvals_banded`, on the host: a GPU array is a ``TypeError``). Derivatives for
    distinct eigenvalues, by :func:`gvae.rules.banded.eigvals_banded_vjp` and ``eigvals_banded_jvp``."""
    linalg.every_eigenvalue("eigvals_banded", select)
    return _apply("eigvals_banded", (bool(lower),), check_finite, a_band)
