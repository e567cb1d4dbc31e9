"""Numba CPU kernel: Bernoulli log-likelihood from logits, with its gradient in the same pass."""
import numpy as np
from .jit import jit

from .backend import register
from .vecmath_cpu import softplus_and_sigmoid


@jit(error_model="numpy", fastmath={"reassoc"})
def _sum(v):
    """sum(v), reassociated so that it vectorises."""
    acc = 0.0
    for x in v:
        acc += x
    return acc


@register("bernoulli_loglik")
@jit(error_model="numpy")
def bernoulli_loglik(logits, x, dlogits):
    """Row sums of x*l - softplus(l) for logits (M, N) and x (R, N) with M % R == 0 (row i uses
    x[i % R]: S samples per data point share x without a copy). Writes d/dl = x - sigmoid(l) into
    ``dlogits`` (M, N) unless it has zero rows. Maths and row sums in float64, vectorised."""
    m, n = logits.shape
    r = x.shape[0]
    want_grad = dlogits.shape[0] == m
    out = np.empty(m, dtype=logits.dtype)
    terms = np.empty(n)
    for i in range(m):
        xi = x[i % r]
        li = logits[i]
        if want_grad:
            di = dlogits[i]
            for j in range(n):
                sp, sig = softplus_and_sigmoid(np.float64(li[j]))
                terms[j] = xi[j] * li[j] - sp
                di[j] = xi[j] - sig
        else:
            for j in range(n):
                terms[j] = xi[j] * li[j] - softplus_and_sigmoid(np.float64(li[j]))[0]
        out[i] = _sum(terms)
    return out
