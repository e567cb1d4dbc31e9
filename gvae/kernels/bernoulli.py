"""Bernoulli log-likelihood from logits, fused with its gradient."""
from . import bernoulli_cpu  # noqa: F401  (registers the CPU kernel)
from .backend import array_module, implementation
from .checks import float_array, rows, same_dtype


def bernoulli_loglik(logits, x, want_grad=False):
    """sum_j x_j l_j - softplus(l_j) over the last axis; logits (*S, *B, N), x (*B, N).

    The leading dims of ``logits`` are samples that share ``x``. Returns ``(loglik of shape
    logits.shape[:-1], grad wrt logits or None)``."""
    float_array("bernoulli_loglik logits", logits)
    float_array("bernoulli_loglik x", x)
    same_dtype("bernoulli_loglik", logits, x)
    if logits.shape[logits.ndim - x.ndim:] != x.shape:
        raise ValueError(f"bernoulli_loglik: x of shape {x.shape} does not match the trailing dims of "
                         f"logits {logits.shape}")
    xp = array_module(logits, x)
    l2, x2 = rows(xp, logits), rows(xp, x)
    d = xp.empty_like(l2) if want_grad else xp.empty((0, l2.shape[1]), l2.dtype)
    out = implementation("bernoulli_loglik", l2, x2)(l2, x2, d)
    return out.reshape(logits.shape[:-1]), (d.reshape(logits.shape) if want_grad else None)
