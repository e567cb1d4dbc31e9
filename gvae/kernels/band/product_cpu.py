"""Numba CPU kernels: products with a banded factor (L x, L^T x) and the band-restricted outer
products that are the L-gradient of every solve and product."""
import numpy as np

from ..backend import register
from ..cpu.entries import FLOAT, INT, Entry, array
from ..cpu.jit import jit
from ..cpu.specialise import template, variants
from .common_cpu import _FMA, _checksum, _nonpositive
from .driver_cpu import _PARALLEL_MIN, driver, pair_plan


@template(fastmath=_FMA, error_model="numpy")
def _matvec_pairs(L, offs, x, out, lo, hi):
    """y = L_f^T x (``_TRANSPOSED``) or L_f x for the pairs lo..hi-1; vectorised loops over shifted
    slices: L^T x: y_i += L[k, i + o] x_{i + o} (i < n - o);  L x: y_i += L[k, i] x_{i - o} (i >= o)."""
    F, K, n = L.shape
    S = x.shape[0]
    bad = 0
    chk = 0.0
    last = -1
    for p in range(lo, hi):
        f = p // S
        s = p - f * S
        Lf = L[f]
        xv = x[s, f]
        y = out[s, f]
        d = Lf[0]
        if f != last:
            bad += _nonpositive(d)
            chk += _checksum(d)
            last = f
        for i in range(n):
            y[i] = d[i] * xv[i]
        for k in range(1, K):
            o = offs[k]
            r = 0 if _TRANSPOSED else o  # the first entry of y with the term
            lk = Lf[k, o:]
            ys = y[r:]
            xs = xv[o - r:]
            for i in range(n - o):
                ys[i] += lk[i] * xs[i]
        chk += _checksum(y)
    return bad, chk


def _direction(transposed):
    """The kernel (L, offs, x, out) -> (bad, checksum): out = L^T x if transposed, else L x; a worker's
    chunk of pairs runs as a C entry."""
    pairs = variants((_matvec_pairs,), "_t" if transposed else "_n", _TRANSPOSED=transposed)[0]
    return driver(pair_plan, Entry(pairs, results=2, L=array("F", "K", "n"), offs=array("K", dtype=np.int64),
                                   x=array("S", "F", "n"), out=array("S", "F", "n"), lo=INT, hi=INT))


# out[s, f] = L_f^T x[s, f] and out[s, f] = L_f x[s, f]; L (F, K, n); x, out (S, F, n).
register("band_matvec_t")(_direction(True))
register("band_matvec")(_direction(False))


@jit(fastmath=_FMA, error_model="numpy")
def _outer_one(a, c, offs, scale, g, f, s_lo, s_hi):
    n = a.shape[2]
    K = offs.shape[0]
    for k in range(K):
        gk = g[k]
        for i in range(n):
            gk[i] = 0.0
    for s in range(s_lo, s_hi):
        av = a[s, f]
        cv = c[s, f]
        for k in range(K):
            o = offs[k]
            gk = g[k, o:]
            ak = av[o:]
            for i in range(n - o):
                gk[i] += ak[i] * cv[i]
    if scale != 1.0:
        sc = g.dtype.type(scale)
        for k in range(K):
            gk = g[k]
            for i in range(n):
                gk[i] *= sc


@jit(fastmath=_FMA, error_model="numpy")
def _outer_items(a, c, offs, scale, out, lo, hi):
    """Items t = q F + f in [lo, hi) of band_outer (chunk q of the samples, factor f); returns the
    driver's pair as (0, 0.0): band_outer checks nothing."""
    S, F, n = a.shape
    Q = out.shape[0]
    for t in range(lo, hi):
        q = t // F
        f = t - q * F
        _outer_one(a, c, offs, scale, out[q, f], f, q * S // Q, (q + 1) * S // Q)
    return 0, 0.0


@jit
def _outer_plan(a, c, offs, scale, out):
    """Q F items, S F n K work in all."""
    S, F, n = a.shape
    return out.shape[0] * F, 1, S * F * n * offs.shape[0], _PARALLEL_MIN


# A worker's chunk of band_outer runs as a C entry.
_outer = driver(_outer_plan, Entry(_outer_items, results=2, a=array("S", "F", "n"), c=array("S", "F", "n"),
                                   offs=array("K", dtype=np.int64), scale=FLOAT, out=array("Q", "F", "K", "n"),
                                   lo=INT, hi=INT))


@register("band_outer")
def band_outer(a, c, offs, scale, out):
    """Band-restricted sum of outer products, the L-gradient of every solve and product:

    out[q, f, k, i] = scale * sum_{s in chunk q} a[s, f, i] * c[s, f, i - o_k]  (0 for i < o_k).

    a, c (S, F, n); out (Q, F, K, n): the samples are split into Q chunks (Q = 1 when there are
    enough factors to keep every thread busy); the caller sums over q."""
    _outer(a, c, offs, scale, out)
