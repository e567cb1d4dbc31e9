"""CPU kernels for the optimiser: one fused Adam pass over flat buffers (Numba, vectorised: no division
checks, so LLVM emits SIMD), the running average of the parameters (Polyak averaging), alone or in the Adam
pass, and the squared norm. The registered functions cut the buffers into blocks for gvae's threads (:mod:`.cpu.threads`); a
worker runs its block as a C entry (:mod:`.cpu.entries`), without the GIL."""
import math

import numpy as np

from .backend import register
from .cpu import threads
from .cpu.entries import FLAG, FLOAT, Entry, array, run_blocks
from .cpu.jit import jit

_BLOCK = 1024  # squares summed in the array's precision before they join the float64 total
_CHUNK = 2048  # values of each buffer the Adam pass updates before the average reads them back (16 KiB in float64)


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
def _adam_pass(p, g, m, v, rate, eps_hat, beta1, beta2, scale):
    """In place over flat buffers, Adam with bias correction on the gradient g' = scale g:
    m <- b1 m + (1-b1) g';  v <- b2 v + (1-b2) g'^2;  p <- p - rate m / (sqrt(v) + eps_hat), where rate and
    eps_hat fold in the corrections (kernels.adam_constants: lr (m / c1) / (sqrt(v / c2) + eps) with c1 =
    1 - b1^step, c2 = 1 - b2^step); the float64 constants rounded to p's dtype, the maths in it."""
    t = p.dtype.type
    rate, eps_hat = t(rate), t(eps_hat)
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
def _average(a, p, decay):
    """In place over flat buffers: a <- decay a + (1 - decay) p, in a's dtype."""
    t = a.dtype.type
    d, e = t(decay), t(1.0 - decay)
    for i in range(a.size):
        a[i] = d * a[i] + e * p[i]


@jit(error_model="numpy")
def _adam_average(p, g, m, v, a, rate, eps_hat, beta1, beta2, scale, decay):
    """:func:`_adam_pass`, then :func:`_average` of its new p into a, chunk by chunk: the average reads p
    from the cache the pass left it in, not from memory; the bits are the two passes'."""
    for start in range(0, p.size, _CHUNK):
        stop = min(start + _CHUNK, p.size)
        _adam_pass(p[start:stop], g[start:stop], m[start:stop], v[start:stop], rate, eps_hat, beta1, beta2, scale)
        _average(a[start:stop], p[start:stop], decay)


@jit(error_model="numpy")
def _adam_guarded(p, g, m, v, a, rate, eps_hat, clip, norm2, loss, beta1, beta2, decay, averaged):
    """:func:`_adam_pass` with the gradient scaled by clip / sqrt(norm2) where that norm exceeds ``clip``,
    and with ``averaged`` the average's update after it (:func:`_adam_average`); nothing written unless
    ``norm2`` and ``loss`` are finite."""
    if not (math.isfinite(norm2) and math.isfinite(loss)):
        return
    norm = math.sqrt(norm2)
    scale = clip / norm if norm > clip else 1.0
    if averaged:
        _adam_average(p, g, m, v, a, rate, eps_hat, beta1, beta2, scale, decay)
    else:
        _adam_pass(p, g, m, v, rate, eps_hat, beta1, beta2, scale)


_ADAM = Entry(_adam_pass, p=array("n"), g=array("n"), m=array("n"), v=array("n"), rate=FLOAT, eps_hat=FLOAT,
              beta1=FLOAT, beta2=FLOAT, scale=FLOAT)
_ADAM_AVERAGE = Entry(_adam_average, p=array("n"), g=array("n"), m=array("n"), v=array("n"), a=array("n"),
                      rate=FLOAT, eps_hat=FLOAT, beta1=FLOAT, beta2=FLOAT, scale=FLOAT, decay=FLOAT)
_ADAM_GUARDED = Entry(_adam_guarded, p=array("n"), g=array("n"), m=array("n"), v=array("n"), a=array("n"),
                      rate=FLOAT, eps_hat=FLOAT, clip=FLOAT, norm2=FLOAT, loss=FLOAT, beta1=FLOAT, beta2=FLOAT,
                      decay=FLOAT, averaged=FLAG)
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


@register("sum_squares_array")
def sum_squares_array(g):
    """:func:`sum_squares` as a float64 (1,) array."""
    return np.array([sum_squares(g)])


@register("adam_update_guarded")
def adam_update_guarded(p, g, m, v, hyper, norm2, loss, beta1, beta2, a=None, decay=0.0):
    """One Adam step in place with (rate, eps_hat, clip) from the float64 array ``hyper``, clipped by
    ``norm2[0]`` and skipped unless it and ``loss[0]`` are finite, and with an average ``a`` its update
    (:func:`_adam_guarded`), in blocks on gvae's threads."""
    rate, eps_hat, clip = (float(x) for x in hyper[:3])
    n2, value = float(norm2[0]), float(loss[0])
    averaged, a = a is not None, p if a is None else a  # without an average the kernel never reads its a
    run_blocks(_ADAM_GUARDED, lambda k, lo, hi: (p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], a[lo:hi], rate, eps_hat, clip,
                                                 n2, value, beta1, beta2, decay, averaged),
               threads.row_blocks(p.size, 1, 0.6e-9 if not averaged else 0.8e-9))


@register("adam_update")
def adam_update(p, g, m, v, rate, eps_hat, beta1, beta2, scale, a=None, decay=0.0):
    """One Adam step in place (see :func:`_adam_pass`), and with an average ``a`` its update in the same
    pass (:func:`_adam_average`), in blocks on gvae's threads."""
    if a is None:
        run_blocks(_ADAM, lambda k, lo, hi: (p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], rate, eps_hat, beta1, beta2, scale),
                   threads.row_blocks(p.size, 1, 0.6e-9))
    else:
        run_blocks(_ADAM_AVERAGE, lambda k, lo, hi: (p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], a[lo:hi], rate, eps_hat,
                                                     beta1, beta2, scale, decay), threads.row_blocks(p.size, 1, 0.8e-9))


@register("average_update")
def average_update(a, p, decay):
    """One step of the exponential moving average in place (see :func:`_average`), in blocks on gvae's
    threads."""
    run_blocks(_AVERAGE, lambda k, lo, hi: (a[lo:hi], p[lo:hi], decay), threads.row_blocks(a.size, 1, 0.2e-9))
