"""SciPy's banded functions on tensors: :mod:`gvae.linalg`'s six functions and :func:`eigvals_banded` with
SciPy's signatures and banded storage, batched (leading axes of ``ab`` and ``b`` broadcast), differentiable
in both arguments.

Each function flattens its batch with PyTorch's own ``broadcast_to`` and ``reshape``
(:func:`gvae.linalg.batched_call`: their derivatives sum a broadcast argument's gradient back to its
shape) and calls one operator ``gvae::linalg_NAME`` on (F, rows, n) bands and (F, n, k) right-hand sides,
defined as :mod:`gvae.torch.ops` defines its own: CPU tensors as NumPy views, CUDA tensors as CuPy views
(DLPack), a fake implementation (``torch.compile`` traces through), a vmap rule (a mapped axis joins F)
and derivatives in a ``torch.autograd.Function``. The backward runs the rule of
:mod:`gvae.rules.banded` as the operator ``gvae::linalg_NAME_vjp``, forward mode as
``gvae::linalg_NAME_jvp``. Differentiable once: the rules
have no derivatives of their own, so a double backward or a second forward mode raises
``NotImplementedError``.

float32 stays float32; any other real dtype is computed in float64. ``overwrite_*`` are accepted for
SciPy's signatures; ``check_finite`` refuses NaN and inf (a ``ValueError``), a matrix that is not positive
definite is :class:`gvae.linalg.LinAlgError`."""
import numpy as np
import torch

from .. import linalg
from ..rules.banded import FUNCTIONS
from .autograd import _autograd, _call
from .checks import _broadcast_shapes
from .derivatives import _no_double_backward, _no_forward_mode
from .library import _OPS, _define, _lib

__all__ = ["solve_banded", "solveh_banded", "cholesky_banded", "cho_solve_banded", "matmul_banded",
           "logdeth_banded", "eigvals_banded"]

_TYPES = {"l": "int", "u": "int", "lower": "bool"}


def _dtypes(name, tensors):
    """A ``TypeError`` unless every tensor is float32 or float64, of one dtype."""
    dtypes = {t.dtype for t in tensors if t is not None}
    if len(dtypes) != 1 or not dtypes <= {torch.float32, torch.float64}:
        raise TypeError(f"gvae::{name}: the tensors must be all float32 or all float64, got "
                        f"{sorted(str(d) for d in dtypes)}")


def _host(name, f, count):
    """The body of an operator (see :func:`gvae.torch.library._define`): ``f`` on the arrays of its ``count``
    leading (optional) tensor arguments and its other arguments, a result or a tuple of them back."""
    def host(array, result, *args):
        tensors = args[:count]
        _dtypes(name, tensors)
        out = _single(f([None if t is None else array(t.contiguous()) for t in tensors], args[count:]))
        return tuple(map(result, out)) if isinstance(out, tuple) else result(out)
    return host


def _single(out):
    """A list or tuple of one result as that result (the schema of an operator with one result)."""
    return out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out


def _fake(name, shapes, count):
    """The fake implementation: ``shapes(*tensors)`` the output's shape, or a list of the outputs'."""
    def fake(*args):
        tensors = args[:count]
        _dtypes(name, tensors)
        out = shapes(*tensors)
        return (tuple(tensors[0].new_empty(s) for s in out) if isinstance(out, list)
                else tensors[0].new_empty(out))
    return fake


def _vmap(name):
    """A mapped axis joins F, the leading axis of every tensor argument and result (an unmapped tensor is
    expanded along it)."""
    op = _OPS[name]

    def rule(info, in_dims, *args):
        B = info.batch_size
        mapped = [a if not isinstance(a, torch.Tensor) else a.movedim(d, 0) if d is not None
                  else a.expand((B,) + a.shape) for a, d in zip(args, in_dims)]
        F = mapped[0].shape[1]
        out = op(*(a.flatten(0, 1) if isinstance(a, torch.Tensor) else a for a in mapped))
        if isinstance(out, tuple):
            return tuple(o.unflatten(0, (B, F)) for o in out), (0,) * len(out)
        return out.unflatten(0, (B, F)), 0
    torch.library.register_vmap(f"gvae::{name}", rule, lib=_lib)


def _register(name, spec):
    """``gvae::linalg_NAME`` (forward), ``_vjp`` and ``_jvp``, with their fakes, vmap rules and
    derivatives."""
    op, k = f"linalg_{name}", len(spec.inputs)
    params = ", ".join(f"{_TYPES[p]} {p}" for p in spec.params)
    tensors = ", ".join(f"Tensor {a}" for a in spec.inputs)
    results = "(" + ", ".join(["Tensor"] * k) + ")" if k > 1 else "Tensor"

    _define(op, f"({tensors}, {params}, bool check_finite) -> Tensor",
            _host(op, lambda arrays, rest: spec.forward(tuple(rest[:-1]), rest[-1], *arrays), k),
            _fake(op, lambda *ts: spec.shape(*(t.shape for t in ts)), k))
    _define(f"{op}_vjp", f"({tensors}, Tensor out, Tensor g, {params}) -> {results}",
            _host(f"{op}_vjp", lambda arrays, rest: tuple(spec.vjp(tuple(rest), arrays[:k], *arrays[k:])), k + 2),
            _fake(f"{op}_vjp", lambda *ts: _single([t.shape for t in ts[:k]]), k + 2))
    refuse = _no_double_backward(name, "its rules in gvae.rules.banded have no derivatives of their own")
    _autograd(f"{op}_vjp", lambda ctx, inputs, output: (), refuse,
              _no_forward_mode(f"{name}'s gradient", "its rule has no derivative of its own"))
    tangents = ", ".join(f"Tensor? d{a}" for a in spec.inputs)
    _define(f"{op}_jvp", f"({tensors}, Tensor out, {tangents}, {params}) -> Tensor",
            _host(f"{op}_jvp", lambda arrays, rest: spec.jvp(tuple(rest), arrays[:k], arrays[k], arrays[k + 1:]),
                  2 * k + 1),
            _fake(f"{op}_jvp", lambda *ts: ts[k].shape, 2 * k + 1))
    _autograd(f"{op}_jvp", lambda ctx, inputs, output: (), refuse,
              _no_forward_mode(f"{name}'s tangent", "its rule has no derivative of its own"))
    _autograd(op, _save, _backward(op, k), _jvp(op, k))
    for suffix in ("", "_vjp", "_jvp"):
        _vmap(op + suffix)


def _save(ctx, inputs, output):
    tensors = [a for a in inputs if isinstance(a, torch.Tensor)]
    ctx.params = inputs[len(tensors):-1]
    return (*tensors, output)


def _backward(op, k):
    def backward(ctx, g):
        saved = ctx.saved_tensors
        grads = _call(f"{op}_vjp", *saved, g, *ctx.params)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return (*(gr if need else None for gr, need in zip(grads, ctx.needs_input_grad)),
                *(None,) * (len(ctx.params) + 1))
    return backward


def _jvp(op, k):
    def jvp(ctx, *tangents):
        return _call(f"{op}_jvp", *ctx.saved_tensors, *tangents[:k], *ctx.params)
    return jvp


for _name, _spec in FUNCTIONS.items():
    _register(_name, _spec)


def _apply(name, params, check_finite, ab, b=None, l_and_u=None):
    """``gvae::linalg_NAME`` on ``ab`` (and ``b``) as tensors of one floating dtype, the batch flattened
    and restored by :func:`gvae.linalg.batched_call`."""
    # (as NumPy arrays first: a list of floats is float64, as SciPy takes it)
    tensors = [t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t)) for t in (ab, b) if t is not None]
    if any(t.is_complex() for t in tensors):
        raise TypeError(f"{name}: complex tensors are not taken; gvae's banded functions are real")
    dtype = torch.float32 if all(t.dtype == torch.float32 for t in tensors) else torch.float64
    tensors = [t.to(dtype) for t in tensors]
    linalg.check_bands(name, tensors[0], l_and_u)
    return linalg.batched_call(name, lambda *flat: _call(f"linalg_{name}", *flat, *params, bool(check_finite)),
                               *tensors, broadcast_to=torch.broadcast_to, broadcast=_broadcast_shapes)


def solve_banded(l_and_u, ab, b, overwrite_ab=False, overwrite_b=False, check_finite=True):
    """x with A x = b, A the general band matrix of ``l_and_u`` = (l, u) in ``ab`` (*batch, l + u + 1, n),
    b (*batch, n) or (*batch, n, k) (:func:`gvae.linalg.solve_banded`: LU with partial pivoting).
    Derivatives: gb = A^-T g, gA = -gb x^T on the band; dx = A^-1 (db - dA x). CPU and CUDA tensors."""
    l_and_u = linalg.band_counts("solve_banded", l_and_u)
    return _apply("solve_banded", l_and_u, check_finite, ab, b, l_and_u)


def solveh_banded(ab, b, overwrite_ab=False, overwrite_b=False, lower=False, check_finite=True):
    """x with A x = b, A symmetric positive definite in ``ab`` (*batch, u + 1, n), upper form or with
    ``lower=True`` lower form (:func:`gvae.linalg.solveh_banded`). Derivatives: gb = A^-1 g, gA = -(gb x^T
    + x gb^T) on the stored triangle (once on the diagonal); dx = A^-1 (db - dA x). CPU and CUDA tensors."""
    return _apply("solveh_banded", (bool(lower),), check_finite, ab, b)


def cholesky_banded(ab, overwrite_ab=False, lower=False, check_finite=True):
    """The Cholesky factor of the symmetric positive definite ``ab`` (*batch, u + 1, n) in the same form: U
    with A = U^T U, or with ``lower=True`` L with A = L L^T (:func:`gvae.linalg.cholesky_banded`).
    Derivatives: the factor's gradient (gvae's ``band_cholesky_grad``); dL from dA = dL L^T + L dL^T, column
    by column (n sequential steps). CPU and CUDA tensors."""
    return _apply("cholesky_banded", (bool(lower),), check_finite, ab)


def cho_solve_banded(cb_and_lower, b, overwrite_b=False, check_finite=True):
    """x with A x = b from A's factor ``(cb, lower)`` as :func:`cholesky_banded` returns it
    (:func:`gvae.linalg.cho_solve_banded`); derivatives in cb and b. CPU and CUDA tensors."""
    cb, lower = linalg.factor_and_form("cho_solve_banded", cb_and_lower)
    return _apply("cho_solve_banded", (bool(lower),), check_finite, cb, b)


def matmul_banded(l_and_u, ab, x, check_finite=True):
    """A x for the general band matrix A of ``l_and_u`` = (l, u) in ``ab`` (*batch, l + u + 1, n), x as b
    of :func:`solve_banded` (:func:`gvae.linalg.matmul_banded`). Derivatives: gx = A^T g, gA = g x^T on
    the band; dy = dA x + A dx. CPU and CUDA tensors."""
    l_and_u = linalg.band_counts("matmul_banded", l_and_u)
    return _apply("matmul_banded", l_and_u, check_finite, ab, x, l_and_u)


def logdeth_banded(ab, lower=False, check_finite=True):
    """log det A of the symmetric positive definite ``ab`` (*batch, u + 1, n), shape ``batch``
    (:func:`gvae.linalg.logdeth_banded`). Derivatives: gA = g A^-1 on the stored triangle (off-diagonals
    twice); d log det A = tr(A^-1 dA). CPU and CUDA tensors."""
    return _apply("logdeth_banded", (bool(lower),), check_finite, ab)


def eigvals_banded(a_band, lower=False, overwrite_a_band=False, select="a", select_range=None, check_finite=True):
    """The eigenvalues, ascending, (*batch, n), of the symmetric band matrix in ``a_band`` (*batch, u + 1,
    n), upper form or with ``lower=True`` lower form (:func:`gvae.linalg.eigvals_banded`: LAPACK through
    SciPy, each matrix of the batch); ``select='a'`` only. Derivatives from the eigenvectors v_k
    (:func:`gvae.linalg.eig_banded`, computed again): gA = sum_k g_k v_k v_k^T on the stored triangle,
    dlam_k = v_k^T dA v_k, for distinct eigenvalues. CPU tensors only (a CUDA tensor: ``TypeError``)."""
    linalg.every_eigenvalue("eigvals_banded", select)
    return _apply("eigvals_banded", (bool(lower),), check_finite, a_band)
