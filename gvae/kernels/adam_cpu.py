"""CPU kernels for the optimiser: one fused Adam pass over flat buffers (Numba, vectorised: no division
checks, so LLVM emits SIMD), the running average of the parameters (Polyak averaging), and the squared
norm. The registered functions cut the buffers into blocks for gvae's threads (:mod:`.cpu.threads`); a
worker runs its block as a C entry (:mod:`.cpu.entries`), without the GIL."""
import math

import numpy as np

from .backend import register
from .cpu import threads
from .cpu.entries import FLOAT, INT, Entry, array, run_blocks
from .cpu.jit import jit

_BLOCK = 1024  # squares summed in the array's precision before they join the float64 total


@jit(error_model="numpy", fastmath={"reassoc", "contract"})
def _sum_squares(g):
    """sum(g**2) of a contiguous 1-D array: per block of _BLOCK values a sum in g's dtype, which may be
    reassociated (so LLVM keeps one running sum per vector lane: without it the loop is a chain of
    dependent adds), and the blocks' sums added in float64. Relative error about 1e-9 for float32 (each
    lane adds 64 squares), less than float64 sums of BLAS dot products over chunks, and faster than
    them."""
    n = g.size
    whole = n - n % _BLOCK
    total = 0.0
    for start in range(0, whole, _BLOCK):
        part = g.dtype.type(0.0)
        for i in range(start, start + _BLOCK):
            part += g[i] * g[i]
        total += part
    part = g.dtype.type(0.0)
    for i in range(whole, n):
        part += g[i] * g[i]
    return total + part


@jit(error_model="numpy")
def _adam(p, g, m, v, lr, beta1, beta2, eps, step, scale):
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


_ADAM = Entry(_adam, p=array("n"), g=array("n"), m=array("n"), v=array("n"), lr=FLOAT, beta1=FLOAT, beta2=FLOAT,
              eps=FLOAT, step=INT, scale=FLOAT)


@jit(error_model="numpy")
def _average(a, p, decay):
    """In place over flat buffers: a <- decay a + (1 - decay) p, in a's dtype."""
    t = a.dtype.type
    d, e = t(decay), t(1.0 - decay)
    for i in range(a.size):
        a[i] = d * a[i] + e * p[i]


_AVERAGE = Entry(_average, a=array("n"), p=array("n"), decay=FLOAT)
_SUM_SQUARES = Entry(_sum_squares, results=1, g=array("n"))


@register("sum_squares")
def sum_squares(g):
    """sum(g**2) of a 1-D array (float64 sums of per-block sums, :func:`_sum_squares`), in blocks on gvae's
    threads."""
    parts = threads.row_blocks(g.size, 1, 0.036e-9)
    sums = np.empty((len(parts), 1))
    run_blocks(_SUM_SQUARES, lambda k, lo, hi: (g[lo:hi],), parts, sums)
    return sum(sums[:, 0].tolist())


@register("adam_update")
def adam_update(p, g, m, v, lr, beta1, beta2, eps, step, scale):
    """One Adam step in place (see :func:`_adam`), in blocks on gvae's threads."""
    run_blocks(_ADAM, lambda k, lo, hi: (p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], lr, beta1, beta2, eps, step, scale),
               threads.row_blocks(p.size, 1, 0.6e-9))


@register("average_update")
def average_update(a, p, decay):
    """One step of the exponential moving average in place (see :func:`_average`), in blocks on gvae's
    threads."""
    run_blocks(_AVERAGE, lambda k, lo, hi: (a[lo:hi], p[lo:hi], decay), threads.row_blocks(a.size, 1, 0.2e-9))
