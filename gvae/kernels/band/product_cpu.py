"""Numba CPU kernels: products with a banded factor (L x, L^T x) and the band-restricted outer
products that are the L-gradient of every solve and product."""
import numpy as np

from ..backend import register
from ..jit import jit
from ..native_cpu import array_at, bits, float_of
from .common_cpu import _FMA, _checksum, _nonpositive
from .driver_cpu import _PARALLEL_MIN, driver, pair_plan
from .variants_cpu import specialise, template


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


_pairs_t = specialise((_matvec_pairs,), "_t", _TRANSPOSED=True)[0]
_pairs_n = specialise((_matvec_pairs,), "_n", _TRANSPOSED=False)[0]


@jit(error_model="numpy")
def _matvec_at(args, dtype):
    """The kernel of the C entry (native_cpu) of a chunk of the products: args = (itemsize; L's address, F, K,
    n; offs' address; x's address, S; out's address; lo, hi; the flags' address; transposed)."""
    F, K, n, S = args[2], args[3], args[4], args[7]
    L, offs = array_at(args[1], (F, K, n), dtype), array_at(args[5], K, np.int64)
    x, out = array_at(args[6], (S, F, n), dtype), array_at(args[8], (S, F, n), dtype)
    if args[12]:
        bad, chk = _pairs_t(L, offs, x, out, args[9], args[10])
    else:
        bad, chk = _pairs_n(L, offs, x, out, args[9], args[10])
    flags = array_at(args[11], 2, np.float64)
    flags[0], flags[1] = bad, chk


def _direction(transposed):
    """The kernel (L, offs, x, out) -> (bad, checksum): out = L^T x if transposed, else L x."""
    def arguments(L, offs, x, out, lo, hi, flags):
        return (L.itemsize, L.ctypes.data, *L.shape, offs.ctypes.data, x.ctypes.data, x.shape[0], out.ctypes.data,
                lo, hi, flags.ctypes.data, int(transposed))
    return driver(pair_plan, _pairs_t if transposed else _pairs_n, (_matvec_at, arguments))


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


@jit(error_model="numpy")
def _outer_at(args, dtype):
    """The kernel of the C entry (native_cpu) of a chunk of band_outer: args = (itemsize; a's and c's
    addresses, S, F, n; offs' address, K; out's address, Q; scale as float bits; lo, hi; the flags'
    address)."""
    S, F, n, K, Q = args[3], args[4], args[5], args[7], args[9]
    bad, chk = _outer_items(array_at(args[1], (S, F, n), dtype), array_at(args[2], (S, F, n), dtype),
                            array_at(args[6], K, np.int64), float_of(args[10]), array_at(args[8], (Q, F, K, n), dtype),
                            args[11], args[12])
    flags = array_at(args[13], 2, np.float64)
    flags[0], flags[1] = bad, chk


def _outer_arguments(a, c, offs, scale, out, lo, hi, flags):
    return (a.itemsize, a.ctypes.data, c.ctypes.data, *a.shape, offs.ctypes.data, offs.shape[0], out.ctypes.data,
            out.shape[0], bits(scale), lo, hi, flags.ctypes.data)


_outer = driver(_outer_plan, _outer_items, (_outer_at, _outer_arguments))


@register("band_outer")
def band_outer(a, c, offs, scale, out):
    """Band-restricted sum of outer products, the L-gradient of every solve and product:

    out[q, f, k, i] = scale * sum_{s in chunk q} a[s, f, i] * c[s, f, i - o_k]  (0 for i < o_k).

    a, c (S, F, n); out (Q, F, K, n): the samples are split into Q chunks (Q = 1 when there are
    enough factors to keep every thread busy); the caller sums over q."""
    _outer(a, c, offs, scale, out)
