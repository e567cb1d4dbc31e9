"""The banded-factor kernels of docs/reference/api.md section 2 as JAX functions with ``jax.custom_vjp``.

Each function checks its arguments (:mod:`gvae.jax.checks`) and calls, on concrete arrays, the kernel
directly (:mod:`gvae.jax.bridge`: nothing to differentiate, and ``custom_vjp``'s dispatch costs many kernel
calls), else its ``custom_vjp`` (:mod:`gvae.jax.derivatives`), under ``jit``, ``vmap`` and ``grad``
through a callback. Reverse mode only, to first order.

Shapes, dtypes and offsets are checked while tracing (a ``TypeError``/``ValueError`` naming the function
and argument, under ``jit`` too); the verdict on the values (a diagonal entry <= 0, NaN) is the kernel's
``ValueError``, raised directly in eager mode and, under ``jit``, arriving wrapped in a
``jax.errors.JaxRuntimeError`` whose message contains it on the CPU, as itself on a GPU (jaxlib 0.11).
"""
from .bridge import _concrete
from .checks import CHECKS, _array, _dtype, _factor
from .derivatives import _SIGMA, _VECTOR, _head, _head_plain, _head_shapes, _logdet, _logdet_plain, _vector

__all__ = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec", "band_logdet", "band_trace_inv",
           "band_diag_inv", "band_head"]


def _vector_public(name, argname, L, offsets, v, check):
    L, offsets = _factor(name, L, offsets)
    v = _array(v)
    _dtype(name, [("L", L), (argname, v)])
    CHECKS.vector(name, argname, L, v)
    if _concrete((L, v)):  # nothing to differentiate: custom_vjp's dispatch would cost many kernel calls
        return _vector(name, L, offsets, v, bool(check))
    return _VECTOR[name](L, offsets, v, bool(check))


def band_solve_t(L, offsets, b, *, check=True):
    """x with L^T x = b; L (*batch, K, n), b (*lead, n) broadcasting with batch; float32 or float64."""
    return _vector_public("band_solve_t", "b", L, offsets, b, check)


def band_solve(L, offsets, b, *, check=True):
    """x with L x = b (shapes as :func:`band_solve_t`)."""
    return _vector_public("band_solve", "b", L, offsets, b, check)


def band_matvec_t(L, offsets, x, *, check=True):
    """L^T x (shapes as :func:`band_solve_t`)."""
    return _vector_public("band_matvec_t", "x", L, offsets, x, check)


def band_matvec(L, offsets, x, *, check=True):
    """L x (shapes as :func:`band_solve_t`)."""
    return _vector_public("band_matvec", "x", L, offsets, x, check)


def band_logdet(L, *, check=True):
    """log det L = sum_i log L[..., 0, i], shape ``L.shape[:-2]``."""
    L, _ = _factor("band_logdet", L)
    _dtype("band_logdet", [("L", L)])
    return (_logdet_plain if _concrete((L,)) else _logdet)(L, bool(check))


def band_trace_inv(L, offsets, *, check=True):
    """tr((L L^T)^-1), exact, shape ``L.shape[:-2]``."""
    L, offsets = _factor("band_trace_inv", L, offsets)
    _dtype("band_trace_inv", [("L", L)])
    plain, op = _SIGMA["band_trace_inv"]
    return (plain if _concrete((L,)) else op)(L, offsets, bool(check))


def band_diag_inv(L, offsets, *, check=True):
    """diag((L L^T)^-1), exact, shape ``L.shape[:-2] + (n,)``."""
    L, offsets = _factor("band_diag_inv", L, offsets)
    _dtype("band_diag_inv", [("L", L)])
    plain, op = _SIGMA["band_diag_inv"]
    return (plain if _concrete((L,)) else op)(L, offsets, bool(check))


def band_head(L, offsets, mu, eps, *, check=True):
    """A VAE step's three uses of q = N(mu, (L L^T)^-1) in one kernel call and one backward: ``(z, log_q,
    kl)`` with z = mu + L^-T eps (the reparameterised sample, of eps's shape broadcast with L's batch),
    log_q = log q(z) (that shape without n, broadcast with mu's batch) and kl = KL(q || N(0, I)) (L's batch
    broadcast with mu's). The same values and derivatives as ``mu + band_solve_t(L, offsets, eps)``, the
    log-density at it and the closed-form KL (:mod:`gvae.rules.head`). L (*batch, K, n); mu (*batch, n);
    eps (*S, *batch, n); float32 or float64."""
    L, offsets = _factor("band_head", L, offsets)
    mu, eps = _array(mu), _array(eps)
    _dtype("band_head", [("L", L), ("mu", mu), ("eps", eps)])
    _head_shapes(L, mu, eps)
    x, log_q, kl = (_head_plain if _concrete((L, mu, eps)) else _head)(L, offsets, mu, eps, bool(check))
    return mu + x, log_q, kl
