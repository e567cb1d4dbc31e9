"""CPU kernels for the optimiser: one fused Adam pass over flat buffers (Numba, vectorised: no division
checks, so LLVM emits SIMD), the running average of the parameters (Polyak averaging), and the squared
norm. The registered functions cut the buffers into blocks for gvae's threads (:mod:`threads`); a worker
runs its block as a C entry (:mod:`native_cpu`), without the GIL."""
import math

import numpy as np

from .jit import jit

from . import threads
from .backend import register
from .native_cpu import array_at, bits, float_of, row_address, run_blocks

_BLOCK = 1024  # squares summed in the array's precision before they join the float64 total


@jit(error_model="numpy", fastmath={"reassoc", "contract"})
def _sum_squares(g):
    """sum(g**2) of a contiguous 1-D array: per block of _BLOCK values a sum in g's dtype, which may be
    reassociated (so LLVM keeps one running sum per vector lane: without it the loop was a chain of
    dependent adds, 0.9 ms for 1.1M float32 values), and the blocks' sums added in float64. Relative
    error about 1e-9 for float32 (each lane adds 64 squares); 47 us for the 1.3M float32 gradient of the
    784-500-500-16 VAE on one Zen 5 core, where float64 sums of BLAS dot products over chunks of 65,536
    took 71-76 us (a Python loop of 20 calls) and erred by 4e-8."""
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


@jit(error_model="numpy")
def _adam_at(args, dtype):
    """The kernel of the C entry (native_cpu) of :func:`_adam`: args = (itemsize; addresses of p, g, m, v; n;
    lr, beta1, beta2, eps as float bits; step; scale as float bits)."""
    n = args[5]
    _adam(array_at(args[1], n, dtype), array_at(args[2], n, dtype), array_at(args[3], n, dtype),
          array_at(args[4], n, dtype), float_of(args[6]), float_of(args[7]), float_of(args[8]), float_of(args[9]),
          args[10], float_of(args[11]))


@jit(error_model="numpy")
def _average(a, p, decay):
    """In place over flat buffers: a <- decay a + (1 - decay) p, in a's dtype."""
    t = a.dtype.type
    d, e = t(decay), t(1.0 - decay)
    for i in range(a.size):
        a[i] = d * a[i] + e * p[i]


@jit(error_model="numpy")
def _average_at(args, dtype):
    """The kernel of the C entry (native_cpu) of :func:`_average`: args = (itemsize; addresses of a, p; n;
    decay as float bits)."""
    n = args[3]
    _average(array_at(args[1], n, dtype), array_at(args[2], n, dtype), float_of(args[4]))


@jit(error_model="numpy")
def _sum_squares_at(args, dtype):
    """The kernel of the C entry (native_cpu) of :func:`_sum_squares`: args = (itemsize; g's address; n; the
    float64 result's address)."""
    array_at(args[3], 1, np.float64)[0] = _sum_squares(array_at(args[1], args[2], dtype))


@register("sum_squares")
def sum_squares(g):
    """sum(g**2) of a 1-D array (float64 sums of per-block sums, :func:`_sum_squares`), in blocks on gvae's
    threads."""
    parts = threads.row_blocks(g.size, 1, 0.036e-9)
    sums, size = np.empty(len(parts)), g.itemsize

    def run(k, lo, hi):
        sums[k] = _sum_squares(g[lo:hi])
    run_blocks(run, _sum_squares_at, lambda k, lo, hi: (size, row_address(g, lo), hi - lo, row_address(sums, k)),
               parts, (g, sums))
    return sum(sums.tolist())


@register("adam_update")
def adam_update(p, g, m, v, lr, beta1, beta2, eps, step, scale):
    """One Adam step in place (see :func:`_adam`), in blocks on gvae's threads."""
    size = p.itemsize
    hyper = (bits(lr), bits(beta1), bits(beta2), bits(eps), int(step), bits(scale))
    run_blocks(lambda k, lo, hi: _adam(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], lr, beta1, beta2, eps, step, scale),
               _adam_at, lambda k, lo, hi: (size, *(row_address(a, lo) for a in (p, g, m, v)), hi - lo, *hyper),
               threads.row_blocks(p.size, 1, 0.6e-9), (p, g, m, v))


@register("average_update")
def average_update(a, p, decay):
    """One step of the exponential moving average in place (see :func:`_average`), in blocks on gvae's
    threads."""
    size = a.itemsize
    run_blocks(lambda k, lo, hi: _average(a[lo:hi], p[lo:hi], decay), _average_at,
               lambda k, lo, hi: (size, row_address(a, lo), row_address(p, lo), hi - lo, bits(decay)),
               threads.row_blocks(a.size, 1, 0.2e-9), (a, p))
