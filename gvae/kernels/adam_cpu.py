"""Numba CPU kernels for the optimiser: one fused Adam pass over flat buffers, and the squared norm.

Serial and vectorised (no division checks, so LLVM emits SIMD): a thread pool here would fight the
OpenBLAS threads still spinning after the backward GEMMs."""
import math

import numpy as np
from .jit import jit

from .backend import register

_CHUNK = 16384


@register("sum_squares")
@jit(error_model="numpy", fastmath={"reassoc"})
def sum_squares(g):
    """sum(g**2) of a 1-D array: float64 sums of dtype-precision chunks (reassociated within a chunk,
    so that LLVM vectorises the reduction)."""
    n = g.size
    total = 0.0
    for c in range(0, n, _CHUNK):
        acc = g.dtype.type(0.0)
        for i in range(c, min(n, c + _CHUNK)):
            acc += g[i] * g[i]
        total += acc
    return total


@register("adam_update")
@jit(error_model="numpy")
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
    for i in range(p.size):
        gi = sc * g[i]
        mi = b1 * m[i] + a1 * gi
        vi = b2 * v[i] + a2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= rate * mi / (math.sqrt(vi) + eps_hat)
