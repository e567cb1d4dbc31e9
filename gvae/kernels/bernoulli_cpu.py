"""Numba CPU kernel: Bernoulli log-likelihood from logits, with its gradient in the same pass."""
import math

import numpy as np
from numba import njit

from .backend import register


@register("bernoulli_loglik")
@njit(cache=True, error_model="numpy")
def bernoulli_loglik(logits, x, dlogits):
    """Row sums of x*l - softplus(l) for logits (M, N) and x (R, N) with M % R == 0 (row i uses
    x[i % R]: S samples per data point share x without a copy). Writes d/dl = x - sigmoid(l) into
    ``dlogits`` (M, N) unless it has zero rows. Element maths in the dtype; row sums in float64."""
    m, n = logits.shape
    r = x.shape[0]
    want_grad = dlogits.shape[0] == m
    out = np.empty(m, dtype=logits.dtype)
    zero = logits.dtype.type(0.0)
    one = logits.dtype.type(1.0)
    for i in range(m):
        xi = x[i % r]
        acc = 0.0
        for j in range(n):
            l = logits[i, j]
            e = math.exp(-abs(l))
            acc += xi[j] * l - max(l, zero) - math.log1p(e)
            if want_grad:
                inv = one / (one + e)
                dlogits[i, j] = xi[j] - (inv if l >= zero else e * inv)
        out[i] = acc
    return out
