"""Numba CPU kernels for the optimiser: one fused Adam pass over flat buffers, and the squared norm."""
import math

import numpy as np
from numba import njit, prange

from .backend import register

_CHUNK = 16384


@register("sum_squares")
@njit(cache=True, parallel=True, error_model="numpy")
def sum_squares(g):
    """sum(g**2) of a 1-D array: float64 sums of dtype-precision chunks."""
    n = g.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    partial = np.zeros(nchunks, dtype=np.float64)
    for c in prange(nchunks):
        acc = g.dtype.type(0.0)
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            acc += g[i] * g[i]
        partial[c] = acc
    return partial.sum()


@register("adam_update")
@njit(cache=True, parallel=True, error_model="numpy")
def adam_update(p, g, m, v, lr, beta1, beta2, eps, step, scale):
    """In place over flat buffers: Adam with bias correction on the gradient ``scale * g``.

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  p <- p - lr * (m / c1) / (sqrt(v / c2) + eps),
    with c1 = 1 - b1^step and c2 = 1 - b2^step folded into two constants; maths in p's dtype."""
    t = p.dtype.type
    c1 = 1.0 - beta1 ** step
    c2 = 1.0 - beta2 ** step
    rate = t(lr * math.sqrt(c2) / c1)
    eps_hat = t(eps * math.sqrt(c2))
    b1, b2, sc = t(beta1), t(beta2), t(scale)
    a1, a2 = t(1.0 - beta1), t(1.0 - beta2)
    n = p.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            gi = sc * g[i]
            mi = b1 * m[i] + a1 * gi
            vi = b2 * v[i] + a2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] -= rate * mi / (math.sqrt(vi) + eps_hat)
