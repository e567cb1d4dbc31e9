"""Numba CPU kernels for banded lower-triangular factors (the contract lives in :mod:`gvae.kernels.band`).

Canonical layouts; the wrappers in ``band.py`` bring every call to them and check everything first:

- ``L``: (F, K, n) C-contiguous, ``L[f, k, i] = L_{i, i - offs[k]}`` of factor f. Slots with
  ``i < offs[k]`` are never read.
- ``offs``: int64 (K,), strictly increasing, ``offs[0] == 0``, ``offs[-1] < n``.
- right-hand sides and results: (S, F, n) C-contiguous, sample-major: ``b[s, f]`` is the s-th vector
  solved with factor f. ``b`` of shape (S, B, n) against ``L`` of shape (B, K, n) is used as it is.
- per-factor results (log-determinant, trace): (F,).

Vector work is split over the P = F * S (factor, sample) pairs, factor-major, in one chunk per prange
iteration; what depends only on the factor (reciprocal diagonal, rows scaled by it) is computed once per
factor inside a chunk and reused by all its samples. Scratch buffers are allocated per chunk. Inner
loops are branch-free: the edge ``i - offs[k] < 0`` (or ``i + offs[k] >= n``) is handled by splitting
the loop ranges into segments with a fixed number of terms. The substitutions keep the neighbour at
offset 1 (present in chain, grid and extended grid) in a register, so the serial dependency per element
is one fused multiply-add. ``fastmath`` is limited to ``contract`` (FMA), plus ``reassoc`` for the short
dot products of the trace's reverse sweep.
"""
import math

import numpy as np
from numba import njit, prange

from .backend import register

_FMA = {"contract"}
_FMA_REASSOC = {"contract", "reassoc"}
# prange chunks per call: enough to balance 16 threads, few enough that per-chunk set-up is negligible.
_MAX_CHUNKS = 64


@njit(cache=True)
def _nchunks(p):
    return max(1, min(p, _MAX_CHUNKS))


# --------------------------------------------------------------------------------------------------
# Substitutions
# --------------------------------------------------------------------------------------------------

@njit(cache=True, fastmath=_FMA)
def _prep_t(Lf, offs, M):
    """M[0, i] = 1 / L_ii;  M[k, i] = L_{i + o_k, i} / L_ii  (i < n - o_k): the rows of L^T scaled."""
    K, n = Lf.shape
    one = Lf.dtype.type(1.0)
    for i in range(n):
        M[0, i] = one / Lf[0, i]
    for k in range(1, K):
        o = offs[k]
        for i in range(n - o):
            M[k, i] = Lf[k, i + o] * M[0, i]


@njit(cache=True, fastmath=_FMA)
def _prep(Lf, offs, M):
    """M[0, i] = 1 / L_ii;  M[k, i] = L_{i, i - o_k} / L_ii  (i >= o_k): the rows of L scaled."""
    K, n = Lf.shape
    one = Lf.dtype.type(1.0)
    for i in range(n):
        M[0, i] = one / Lf[0, i]
    for k in range(1, K):
        for i in range(offs[k], n):
            M[k, i] = Lf[k, i] * M[0, i]


@njit(cache=True, fastmath=_FMA)
def _solve_t_row(M, offs, b, x):
    """Backward substitution L^T x = b with M from :func:`_prep_t`:
    x_i = M[0, i] b_i - sum_{k >= 1, i + o_k < n} M[k, i] x_{i + o_k}, for i = n-1 .. 0.

    Segment p holds the i with exactly p valid off-diagonal terms: n - o_{p+1} <= i < n - o_p."""
    K, n = M.shape
    if K == 1:
        for i in range(n):
            x[i] = M[0, i] * b[i]
        return
    if offs[1] == 1:
        prev = M[0, n - 1] * b[n - 1]
        x[n - 1] = prev
        hi = n - 1
        for p in range(1, K):
            lo = max(n - offs[p + 1], 0) if p + 1 < K else 0
            for i in range(hi - 1, lo - 1, -1):
                acc = M[0, i] * b[i]
                for k in range(2, p + 1):
                    acc -= M[k, i] * x[i + offs[k]]
                prev = acc - M[1, i] * prev
                x[i] = prev
            hi = lo
    else:
        hi = n
        for p in range(K):
            lo = max(n - offs[p + 1], 0) if p + 1 < K else 0
            for i in range(hi - 1, lo - 1, -1):
                acc = M[0, i] * b[i]
                for k in range(1, p + 1):
                    acc -= M[k, i] * x[i + offs[k]]
                x[i] = acc
            hi = lo


@njit(cache=True, fastmath=_FMA)
def _solve_row(M, offs, b, x):
    """Forward substitution L x = b with M from :func:`_prep`:
    x_i = M[0, i] b_i - sum_{k >= 1, i >= o_k} M[k, i] x_{i - o_k}, for i = 0 .. n-1.

    Segment p holds the i with exactly p valid off-diagonal terms: o_p <= i < o_{p+1}."""
    K, n = M.shape
    if K == 1:
        for i in range(n):
            x[i] = M[0, i] * b[i]
        return
    if offs[1] == 1:
        prev = M[0, 0] * b[0]
        x[0] = prev
        lo = 1
        for p in range(1, K):
            hi = min(offs[p + 1], n) if p + 1 < K else n
            for i in range(lo, hi):
                acc = M[0, i] * b[i]
                for k in range(2, p + 1):
                    acc -= M[k, i] * x[i - offs[k]]
                prev = acc - M[1, i] * prev
                x[i] = prev
            lo = hi
    else:
        lo = 0
        for p in range(K):
            hi = min(offs[p + 1], n) if p + 1 < K else n
            for i in range(lo, hi):
                acc = M[0, i] * b[i]
                for k in range(1, p + 1):
                    acc -= M[k, i] * x[i - offs[k]]
                x[i] = acc
            lo = hi


@register("band_solve_t")
@njit(cache=True, parallel=True, fastmath=_FMA)
def band_solve_t(L, offs, b, out):
    """out[s, f] = L_f^{-T} b[s, f].  L (F, K, n); b, out (S, F, n)."""
    F, K, n = L.shape
    S = b.shape[0]
    P = F * S
    nch = _nchunks(P)
    for c in prange(nch):
        M = np.empty((K, n), dtype=L.dtype)
        last = -1
        for p in range(c * P // nch, (c + 1) * P // nch):
            f = p // S
            if f != last:
                _prep_t(L[f], offs, M)
                last = f
            s = p - f * S
            _solve_t_row(M, offs, b[s, f], out[s, f])


@register("band_solve")
@njit(cache=True, parallel=True, fastmath=_FMA)
def band_solve(L, offs, b, out):
    """out[s, f] = L_f^{-1} b[s, f].  L (F, K, n); b, out (S, F, n)."""
    F, K, n = L.shape
    S = b.shape[0]
    P = F * S
    nch = _nchunks(P)
    for c in prange(nch):
        M = np.empty((K, n), dtype=L.dtype)
        last = -1
        for p in range(c * P // nch, (c + 1) * P // nch):
            f = p // S
            if f != last:
                _prep(L[f], offs, M)
                last = f
            s = p - f * S
            _solve_row(M, offs, b[s, f], out[s, f])


# --------------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------------

@register("band_matvec_t")
@njit(cache=True, parallel=True, fastmath=_FMA)
def band_matvec_t(L, offs, x, out):
    """out[s, f] = L_f^T x[s, f]:  y_i = sum_{k, i + o_k < n} L[k, i + o_k] x_{i + o_k}."""
    F, K, n = L.shape
    S = x.shape[0]
    for p in prange(F * S):
        f = p // S
        s = p - f * S
        Lf = L[f]
        xv = x[s, f]
        y = out[s, f]
        for i in range(n):
            y[i] = Lf[0, i] * xv[i]
        for k in range(1, K):
            o = offs[k]
            for i in range(n - o):
                y[i] += Lf[k, i + o] * xv[i + o]


@register("band_matvec")
@njit(cache=True, parallel=True, fastmath=_FMA)
def band_matvec(L, offs, x, out):
    """out[s, f] = L_f x[s, f]:  y_i = sum_{k, i >= o_k} L[k, i] x_{i - o_k}."""
    F, K, n = L.shape
    S = x.shape[0]
    for p in prange(F * S):
        f = p // S
        s = p - f * S
        Lf = L[f]
        xv = x[s, f]
        y = out[s, f]
        for i in range(n):
            y[i] = Lf[0, i] * xv[i]
        for k in range(1, K):
            o = offs[k]
            for i in range(o, n):
                y[i] += Lf[k, i] * xv[i - o]


@register("band_outer")
@njit(cache=True, parallel=True, fastmath=_FMA)
def band_outer(a, c, offs, scale, out):
    """Band-restricted sum of outer products, the L-gradient of every solve and product:

    out[q, f, k, i] = scale * sum_{s in chunk q} a[s, f, i] * c[s, f, i - o_k]  (0 for i < o_k).

    a, c (S, F, n); out (Q, F, K, n): the samples are split into Q chunks (Q = 1 when there are
    enough factors to keep every thread busy); the caller sums over q."""
    S, F, n = a.shape
    Q = out.shape[0]
    K = offs.shape[0]
    sc = out.dtype.type(scale)
    for t in prange(Q * F):
        q = t // F
        f = t - q * F
        g = out[q, f]
        for k in range(K):
            for i in range(n):
                g[k, i] = 0.0
        for s in range(q * S // Q, (q + 1) * S // Q):
            av = a[s, f]
            cv = c[s, f]
            for k in range(K):
                o = offs[k]
                for i in range(o, n):
                    g[k, i] += av[i] * cv[i - o]
        if sc != 1.0:
            for k in range(K):
                for i in range(offs[k], n):
                    g[k, i] *= sc


# --------------------------------------------------------------------------------------------------
# Log-determinant
# --------------------------------------------------------------------------------------------------

@register("band_logdet")
@njit(cache=True, parallel=True)
def band_logdet(L, out):
    """out[f] = sum_i log L[f, 0, i].

    Numba has no vector log here, so the diagonal is multiplied in float64 blocks of 8 and one log is
    taken per block; a block with an entry outside [1e-30, 1e30] (where the product could leave the
    normal range) falls back to one log per entry."""
    F, K, n = L.shape
    for f in prange(F):
        d = L[f, 0]
        acc = 0.0
        i = 0
        while i + 8 <= n:
            lo = 1e30
            hi = 1e-30
            prod = 1.0
            for j in range(i, i + 8):
                v = np.float64(d[j])
                lo = min(lo, v)
                hi = max(hi, v)
                prod *= v
            if lo >= 1e-30 and hi <= 1e30:
                acc += math.log(prod)
            else:
                for j in range(i, i + 8):
                    acc += math.log(np.float64(d[j]))
            i += 8
        for j in range(i, n):
            acc += math.log(np.float64(d[j]))
        out[f] = acc


# --------------------------------------------------------------------------------------------------
# Exact trace of Sigma = (L L^T)^{-1} and its gradient
# --------------------------------------------------------------------------------------------------
#
# Selected inversion (Takahashi's recursion): from L^T Sigma = L^{-1}, whose upper triangle is
# diag(1 / L_ii), for i = n-1 .. 0 and m_k = i + o_k:
#   Sigma_{i, j} = -(1 / L_ii) sum_{k >= 1} L_{m_k, i} Sigma_{m_k, j}       for i < j <= i + w,
#   Sigma_{i, i} =  (1 / L_ii) (1 / L_ii - sum_{k >= 1} L_{m_k, i} Sigma_{i, m_k}),
# which only reads Sigma entries inside the window [i, i + w], w = o_{K-1}. The forward pass keeps a
# (w+1) x (w+1) symmetric ring window; the gradient pass stores the band of Sigma (n, w+1) and runs the
# recursion backwards in reverse mode. For the chain the diagonal alone satisfies
#   s_i = a_i + c_i s_{i+1},  a_i = 1 / L_ii^2,  c_i = a_i L_{i+1, i}^2.

@njit(cache=True, fastmath=_FMA)
def _trace_chain(Lf, buf):
    n = Lf.shape[1]
    a = buf[0]
    cc = buf[1]
    for i in range(n):
        r = 1.0 / np.float64(Lf[0, i])
        a[i] = r * r
    for i in range(n - 1):
        v = np.float64(Lf[1, i + 1])
        cc[i] = a[i] * v * v
    s = a[n - 1]
    tr = s
    for i in range(n - 2, -1, -1):
        s = a[i] + cc[i] * s
        tr += s
    return tr


@njit(cache=True, fastmath=_FMA)
def _trace_band(Lf, offs, Wm, t, ck, slot):
    K, n = Lf.shape
    W = offs[K - 1] + 1
    for r in range(W):
        for col in range(W):
            Wm[r, col] = 0.0
    tr = 0.0
    kmax = 0
    s0 = (n - 1) % W  # ring slot of index i
    for i in range(n - 1, -1, -1):
        while kmax + 1 < K and i + offs[kmax + 1] < n:
            kmax += 1
        rl = 1.0 / np.float64(Lf[0, i])
        for col in range(W):
            t[col] = 0.0
        for k in range(1, kmax + 1):
            o = offs[k]
            c = np.float64(Lf[k, i + o])
            row = s0 + o
            if row >= W:
                row -= W
            ck[k] = c
            slot[k] = row
            for col in range(W):
                t[col] += c * Wm[row, col]
        d = rl
        for k in range(1, kmax + 1):
            d += ck[k] * rl * t[slot[k]]
        d *= rl
        for col in range(W):
            v = -rl * t[col]
            Wm[s0, col] = v
            Wm[col, s0] = v
        Wm[s0, s0] = d
        tr += d
        s0 -= 1
        if s0 < 0:
            s0 = W - 1
    return tr


@register("band_trace_inv")
@njit(cache=True, parallel=True, fastmath=_FMA)
def band_trace_inv(L, offs, out):
    """out[f] = tr((L_f L_f^T)^{-1}), exactly, in O(n K w) (O(n) for the chain); float64 inside."""
    F, K, n = L.shape
    chain = K == 2 and offs[1] == 1
    W = offs[K - 1] + 1
    nch = _nchunks(F)
    if chain:
        for c in prange(nch):
            buf = np.empty((2, n))
            for f in range(c * F // nch, (c + 1) * F // nch):
                out[f] = _trace_chain(L[f], buf)
    else:
        for c in prange(nch):
            Wm = np.empty((W, W))
            t = np.empty(W)
            ck = np.empty(K)
            slot = np.empty(K, dtype=np.int64)
            for f in range(c * F // nch, (c + 1) * F // nch):
                out[f] = _trace_band(L[f], offs, Wm, t, ck, slot)


@njit(cache=True, fastmath=_FMA)
def _trace_chain_grad(Lf, g, buf, gf):
    """Reverse mode through s_i = a_i + c_i s_{i+1}; tr = sum_i s_i."""
    n = Lf.shape[1]
    a = buf[0]
    cc = buf[1]
    s = buf[2]
    for i in range(n):
        r = 1.0 / np.float64(Lf[0, i])
        a[i] = r * r
    for i in range(n - 1):
        v = np.float64(Lf[1, i + 1])
        cc[i] = a[i] * v * v
    acc = a[n - 1]
    s[n - 1] = acc
    for i in range(n - 2, -1, -1):
        acc = a[i] + cc[i] * acc
        s[i] = acc
    # sb_i = g + sb_{i-1} c_{i-1};  ds_i/dL_ii = -2 s_i / L_ii;  ds_i/dL_{i+1,i} = 2 a_i L_{i+1,i} s_{i+1}
    gf[1, 0] = 0.0
    sb = g
    for i in range(n - 1):
        gf[0, i] = -2.0 * sb * s[i] / np.float64(Lf[0, i])
        gf[1, i + 1] = 2.0 * sb * a[i] * np.float64(Lf[1, i + 1]) * s[i + 1]
        sb = g + sb * cc[i]
    gf[0, n - 1] = -2.0 * sb * s[n - 1] / np.float64(Lf[0, n - 1])


@njit(cache=True, fastmath=_FMA_REASSOC)
def _trace_band_grad(Lf, offs, g, R, Rb, y, gf):
    """Reverse mode through the selected inversion. R[i, d] = Sigma_{i, i+d} (i + d < n) is stored by
    the forward sweep; Rb holds the adjoints of the same entries. Sigma_{m, j} with j < m is read as
    R[j, m - j], so every loop over j is split at j = m."""
    K, n = Lf.shape
    W = offs[K - 1] + 1
    # forward sweep, i = n-1 .. 0
    kmax = 0
    for i in range(n - 1, -1, -1):
        while kmax + 1 < K and i + offs[kmax + 1] < n:
            kmax += 1
        rl = 1.0 / np.float64(Lf[0, i])
        jend = min(i + W, n)
        for d in range(W):
            y[d] = 0.0
        for k in range(1, kmax + 1):
            m = i + offs[k]
            c = np.float64(Lf[k, m])
            for j in range(i + 1, m):
                y[j - i] += c * R[j, m - j]
            for j in range(m, jend):
                y[j - i] += c * R[m, j - m]
        for d in range(1, jend - i):
            R[i, d] = -rl * y[d]
        sd = rl
        for k in range(1, kmax + 1):
            sd -= np.float64(Lf[k, i + offs[k]]) * R[i, offs[k]]
        R[i, 0] = rl * sd
    # reverse sweep, i = 0 .. n-1; row i of Rb is final when step i is reached
    for i in range(n):
        Rb[i, 0] = g
        for d in range(1, W):
            Rb[i, d] = 0.0
    kmax = K - 1
    for i in range(n):
        while kmax > 0 and i + offs[kmax] >= n:
            kmax -= 1
        L_ii = np.float64(Lf[0, i])
        rl = 1.0 / L_ii
        jend = min(i + W, n)
        yb0 = Rb[i, 0]
        # Sigma_ii = rl^2 - rl sum_k c_k Sigma_{i, m_k}
        ssum = 0.0
        for k in range(1, kmax + 1):
            ssum += np.float64(Lf[k, i + offs[k]]) * R[i, offs[k]]
        rlb = yb0 * (2.0 * rl - ssum)
        for k in range(1, kmax + 1):
            o = offs[k]
            gf[k, i + o] = -yb0 * rl * R[i, o]
            Rb[i, o] -= yb0 * rl * np.float64(Lf[k, i + o])
        # Sigma_{i, i+d} = -rl T_d  =>  d/drl = -T_d = Sigma_{i, i+d} L_ii
        acc0 = 0.0
        for d in range(1, jend - i):
            acc0 += Rb[i, d] * R[i, d]
        rlb += L_ii * acc0
        for k in range(1, kmax + 1):
            m = i + offs[k]
            c = np.float64(Lf[k, m])
            coef = -rl * c
            acc = 0.0
            for j in range(i + 1, m):
                yb = Rb[i, j - i]
                acc += yb * R[j, m - j]
                Rb[j, m - j] += coef * yb
            for j in range(m, jend):
                yb = Rb[i, j - i]
                acc += yb * R[m, j - m]
                Rb[m, j - m] += coef * yb
            gf[k, m] -= rl * acc
        gf[0, i] = -rlb * rl * rl
    for k in range(1, K):
        for i in range(offs[k]):
            gf[k, i] = 0.0


@register("band_trace_inv_grad")
@njit(cache=True, parallel=True, fastmath=_FMA)
def band_trace_inv_grad(L, offs, g, out):
    """out[f] = g[f] * d tr((L_f L_f^T)^{-1}) / d L_f on the band (= -2 g (Sigma^2 L) restricted),
    zero in the slots that do not exist. L, out (F, K, n); g (F,)."""
    F, K, n = L.shape
    chain = K == 2 and offs[1] == 1
    W = offs[K - 1] + 1
    nch = _nchunks(F)
    if chain:
        for c in prange(nch):
            buf = np.empty((3, n))
            for f in range(c * F // nch, (c + 1) * F // nch):
                _trace_chain_grad(L[f], np.float64(g[f]), buf, out[f])
    else:
        for c in prange(nch):
            R = np.empty((n, W))
            Rb = np.empty((n, W))
            y = np.empty(W)
            for f in range(c * F // nch, (c + 1) * F // nch):
                _trace_band_grad(L[f], offs, np.float64(g[f]), R, Rb, y, out[f])
