"""Numba CPU kernels: products with a banded factor (L x, L^T x) and the band-restricted outer
products that are the L-gradient of every solve and product."""
from numba import prange

from ..backend import register
from ..jit import jit
from .common_cpu import _FMA, _PARALLEL_MIN, _checksum, _nchunks, _nonpositive


# --------------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------------

@jit(fastmath=_FMA, error_model="numpy")
def _matvec_pairs(L, offs, x, out, lo, hi, transposed):
    """y = L_f^T x (transposed) or L_f x for the pairs lo..hi-1; vectorised loops over shifted slices:
    L^T x: y_i += L[k, i + o] x_{i + o} (i < n - o);  L x: y_i += L[k, i] x_{i - o} (i >= o)."""
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
            lk = Lf[k, o:]
            if transposed:
                xs = xv[o:]
                for i in range(n - o):
                    y[i] += lk[i] * xs[i]
            else:
                ys = y[o:]
                for i in range(n - o):
                    ys[i] += lk[i] * xv[i]
        chk += _checksum(y)
    return bad, chk


@jit(parallel=True, fastmath=_FMA, error_model="numpy")
def _matvec(L, offs, x, out, transposed):
    F, K, n = L.shape
    P = F * x.shape[0]
    if P * n * K < _PARALLEL_MIN:
        return _matvec_pairs(L, offs, x, out, 0, P, transposed)
    bad = 0
    chk = 0.0
    nch = _nchunks(P)
    for c in prange(nch):
        bc, cc = _matvec_pairs(L, offs, x, out, c * P // nch, (c + 1) * P // nch, transposed)
        bad += bc
        chk += cc
    return bad, chk


@register("band_matvec_t")
def band_matvec_t(L, offs, x, out):
    """out[s, f] = L_f^T x[s, f].  L (F, K, n); x, out (S, F, n). Returns (bad, checksum)."""
    return _matvec(L, offs, x, out, True)


@register("band_matvec")
def band_matvec(L, offs, x, out):
    """out[s, f] = L_f x[s, f].  L (F, K, n); x, out (S, F, n). Returns (bad, checksum)."""
    return _matvec(L, offs, x, out, False)


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


@register("band_outer")
@jit(parallel=True, fastmath=_FMA, error_model="numpy")
def band_outer(a, c, offs, scale, out):
    """Band-restricted sum of outer products, the L-gradient of every solve and product:

    out[q, f, k, i] = scale * sum_{s in chunk q} a[s, f, i] * c[s, f, i - o_k]  (0 for i < o_k).

    a, c (S, F, n); out (Q, F, K, n): the samples are split into Q chunks (Q = 1 when there are
    enough factors to keep every thread busy); the caller sums over q."""
    S, F, n = a.shape
    Q = out.shape[0]
    K = offs.shape[0]
    if S * F * n * K < _PARALLEL_MIN:
        for t in range(Q * F):
            q = t // F
            f = t - q * F
            _outer_one(a, c, offs, scale, out[q, f], f, q * S // Q, (q + 1) * S // Q)
    else:
        for t in prange(Q * F):
            q = t // F
            f = t - q * F
            _outer_one(a, c, offs, scale, out[q, f], f, q * S // Q, (q + 1) * S // Q)
