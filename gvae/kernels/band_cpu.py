"""Numba CPU kernels for banded lower-triangular factors (the contract lives in :mod:`gvae.kernels.band`).

Canonical layouts; the wrappers in ``band.py`` bring every call to them:

- ``L``: (F, K, n) C-contiguous, ``L[f, k, i] = L_{i, i - offs[k]}`` of factor f. Slots with
  ``i < offs[k]`` are never read.
- ``offs``: int64 (K,), strictly increasing, ``offs[0] == 0``, ``offs[-1] < n``.
- right-hand sides and results: (S, F, n) C-contiguous, sample-major: ``b[s, f]`` is the s-th vector
  solved with factor f. ``b`` of shape (S, B, n) against ``L`` of shape (B, K, n) is used as it is.
- per-factor results (log-determinant, trace): (F,).

Every kernel writes into ``out`` and returns ``(bad, checksum)``: the number of diagonal entries <= 0
it met, and a float64 sum of its outputs and of the diagonals it read, through which any NaN or inf in
the inputs shows (see ``_checksum``); the wrappers turn them into errors.

Vector work is split over the P = F * S (factor, sample) pairs, factor-major, in one chunk per prange
iteration (serially below ``_PARALLEL_MIN``); what depends only on the factor (reciprocal diagonal,
rows scaled by it) is computed once per factor inside a chunk and reused by all its samples. Scratch
buffers are allocated per chunk. Inner loops are branch-free: the edge ``i - offs[k] < 0`` (or
``i + offs[k] >= n``) is handled by splitting loop ranges or by shifted slices, never by a test per
element. In the substitutions the neighbour at offset 1 (present in chain, grid and extended grid) stays
in a register, so the serial dependency per element is one fused multiply-add. ``error_model="numpy"``
drops Python's division-by-zero checks (the diagonal is checked), which lets the reciprocal loops
vectorise. ``fastmath`` is limited to ``contract`` (FMA), plus ``reassoc`` for the short dot products
of the trace's reverse sweep and the checksums.
"""
import math

import numpy as np
from numba import njit, prange

from .backend import register

_FMA = {"contract"}
_u = np.uint64
_FMA_REASSOC = {"contract", "reassoc"}  # also for the checksums: reordering a sum keeps NaN/inf
# prange chunks per call: enough to balance 16 threads, few enough that per-chunk set-up is negligible.
_MAX_CHUNKS = 64
# Below this much work (elements x diagonals, ~0.3 ms serially) a call runs serially: a parallel region
# costs tens of microseconds to wake the threads, and on a busy 2-core machine it can wait a whole
# scheduler tick (~8 ms) for a thread that is not running.
_PARALLEL_MIN = 1 << 18


@njit(cache=True)
def _nchunks(p):
    return max(1, min(p, _MAX_CHUNKS))


# Every kernel also returns (count of diagonal entries <= 0, checksum) where the checksum adds up its
# outputs and the diagonals it read: NaN or inf anywhere in the inputs reaches it (an infinite diagonal
# entry only through the diagonal's own sum, as its reciprocal is 0). Both are vectorised passes over
# data already in L1, so the wrappers validate at no extra pass over memory.

@njit(cache=True, fastmath=_FMA_REASSOC, error_model="numpy")
def _checksum(v):
    acc = v.dtype.type(0.0)
    for i in range(v.shape[0]):
        acc += v[i]
    return np.float64(acc)


@njit(cache=True, error_model="numpy")
def _nonpositive(d):
    count = 0
    for i in range(d.shape[0]):
        count += np.int64(d[i] <= 0)
    return count


# --------------------------------------------------------------------------------------------------
# Substitutions
# --------------------------------------------------------------------------------------------------

@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _prep_t(Lf, offs, M):
    """M[0, i] = 1 / L_ii;  M[k, i] = L_{i + o_k, i} / L_ii  (i < n - o_k): the rows of L^T scaled."""
    K, n = Lf.shape
    one = Lf.dtype.type(1.0)
    d = Lf[0]
    m0 = M[0]
    for i in range(n):
        m0[i] = one / d[i]
    for k in range(1, K):
        o = offs[k]
        src = Lf[k, o:]
        dst = M[k]
        for i in range(n - o):
            dst[i] = src[i] * m0[i]


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _prep(Lf, offs, M):
    """M[0, i] = 1 / L_ii;  M[k, i] = L_{i, i - o_k} / L_ii  (i >= o_k): the rows of L scaled."""
    K, n = Lf.shape
    one = Lf.dtype.type(1.0)
    d = Lf[0]
    m0 = M[0]
    for i in range(n):
        m0[i] = one / d[i]
    for k in range(1, K):
        o = offs[k]
        src = Lf[k, o:]
        dst = M[k, o:]
        m0o = m0[o:]
        for i in range(n - o):
            dst[i] = src[i] * m0o[i]


# Two formulations of each substitution, chosen per call by _use_blocks:
# - segments: the i range is split where the number of valid off-diagonal terms changes, so the loops
#   over i carry no edge test; each x_i gathers its terms, the offset-1 neighbour kept in a register.
# - blocks: with q the first diagonal whose offset is >= 2 (q = 2 when offset 1 is present, else 1), a
#   block of length offs[q] only reads x outside itself through diagonals q..K-1; those terms are
#   gathered first for the whole block with vectorised loops (into x as scratch), then the offset-1
#   recursion runs through the block, one fused multiply-add per element. Best for the chain (one
#   block) and for long blocks; short blocks would run the vector loops' scalar remainders.
# Indices that LLVM cannot prove non-negative are cast to unsigned (Numba then skips wraparound).

@njit(cache=True)
def _use_blocks(offs, n):
    K = offs.shape[0]
    q = 2 if K > 1 and offs[1] == 1 else 1
    return q >= K or offs[q] >= 64


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _solve_t_main(M, offs, b, x, hi, prev):
    """Rows i = hi-1 .. 0 of L^T x = b, where every diagonal has a term; K = 3, 4 or 5 with offset 1,
    unrolled (grid, extended grid). Returns x_0."""
    K = M.shape[0]
    m0 = M[0]
    m1 = M[1]
    M2 = M[2]
    x2 = x[offs[2]:]
    if K == 3:
        for i in range(hi - 1, -1, -1):
            ui = _u(i)
            prev = m0[ui] * b[ui] - M2[ui] * x2[ui] - m1[ui] * prev
            x[ui] = prev
    elif K == 4:
        M3 = M[3]
        x3 = x[offs[3]:]
        for i in range(hi - 1, -1, -1):
            ui = _u(i)
            prev = m0[ui] * b[ui] - M2[ui] * x2[ui] - M3[ui] * x3[ui] - m1[ui] * prev
            x[ui] = prev
    else:
        M3 = M[3]
        x3 = x[offs[3]:]
        M4 = M[4]
        x4 = x[offs[4]:]
        for i in range(hi - 1, -1, -1):
            ui = _u(i)
            prev = m0[ui] * b[ui] - M2[ui] * x2[ui] - M3[ui] * x3[ui] - M4[ui] * x4[ui] - m1[ui] * prev
            x[ui] = prev
    return prev


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _solve_t_seg(M, offs, b, x):
    K, n = M.shape
    m0 = M[0]
    if K > 1 and offs[1] == 1:
        m1 = M[1]
        prev = m0[n - 1] * b[n - 1]
        x[n - 1] = prev
        hi = n - 1
        for p in range(1, K):
            lo = max(n - offs[p + 1], 0) if p + 1 < K else 0
            if p == K - 1 and 3 <= K <= 5:
                _solve_t_main(M, offs, b, x, hi, prev)
                break
            for i in range(hi - 1, lo - 1, -1):
                ui = _u(i)
                acc = m0[ui] * b[ui]
                for k in range(2, p + 1):
                    acc -= M[k, ui] * x[_u(i + offs[k])]
                prev = acc - m1[ui] * prev
                x[ui] = prev
            hi = lo
    else:
        hi = n
        for p in range(K):
            lo = max(n - offs[p + 1], 0) if p + 1 < K else 0
            for i in range(hi - 1, lo - 1, -1):
                ui = _u(i)
                acc = m0[ui] * b[ui]
                for k in range(1, p + 1):
                    acc -= M[k, ui] * x[_u(i + offs[k])]
                x[ui] = acc
            hi = lo


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _solve_t_blk(M, offs, b, x):
    K, n = M.shape
    chain = K > 1 and offs[1] == 1
    q = 2 if chain else 1
    blen = offs[q] if q < K else n
    m0 = M[0]
    hi = n
    while hi > 0:
        lo = max(hi - blen, 0)
        xb = x[lo:hi]
        m0b = m0[lo:hi]
        bb = b[lo:hi]
        for i in range(hi - lo):
            xb[i] = m0b[i] * bb[i]
        for k in range(q, K):
            o = offs[k]
            top = min(hi, n - o)  # i + o < n
            if top > lo:
                xk = x[lo + o:top + o]
                Mk = M[k, lo:top]
                for i in range(top - lo):
                    xb[i] -= Mk[i] * xk[i]
        if chain:
            m1 = M[1]
            if hi < n:
                prev = x[hi]
                start = hi - 1
            else:
                prev = x[n - 1]
                start = n - 2
            for i in range(start, lo - 1, -1):
                ui = _u(i)
                prev = x[ui] - m1[ui] * prev
                x[ui] = prev
        hi = lo


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _solve_t_row(M, offs, b, x, blocks):
    """Backward substitution L^T x = b with M from :func:`_prep_t`:
    x_i = M[0, i] b_i - sum_{k >= 1, i + o_k < n} M[k, i] x_{i + o_k}, for i = n-1 .. 0."""
    if blocks:
        _solve_t_blk(M, offs, b, x)
    else:
        _solve_t_seg(M, offs, b, x)


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _solve_main(M, offs, b, x, prev):
    """Rows i = o_{K-1} .. n-1 of L x = b, where every diagonal has a term; K = 3, 4 or 5 with offset 1,
    unrolled (grid, extended grid). Views are shifted so that j = i - o_{K-1} indexes them all."""
    K, n = M.shape
    top = offs[K - 1]
    m0 = M[0, top:]
    m1 = M[1, top:]
    bt = b[top:]
    xt = x[top:]
    M2 = M[2, top:]
    x2 = x[top - offs[2]:]
    if K == 3:
        for j in range(n - top):
            prev = m0[j] * bt[j] - M2[j] * x2[j] - m1[j] * prev
            xt[j] = prev
    elif K == 4:
        M3 = M[3, top:]
        x3 = x[top - offs[3]:]
        for j in range(n - top):
            prev = m0[j] * bt[j] - M2[j] * x2[j] - M3[j] * x3[j] - m1[j] * prev
            xt[j] = prev
    else:
        M3 = M[3, top:]
        x3 = x[top - offs[3]:]
        M4 = M[4, top:]
        x4 = x[top - offs[4]:]
        for j in range(n - top):
            prev = m0[j] * bt[j] - M2[j] * x2[j] - M3[j] * x3[j] - M4[j] * x4[j] - m1[j] * prev
            xt[j] = prev
    return prev


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _solve_seg(M, offs, b, x):
    K, n = M.shape
    m0 = M[0]
    if K > 1 and offs[1] == 1:
        m1 = M[1]
        prev = m0[0] * b[0]
        x[0] = prev
        lo = 1
        for p in range(1, K):
            hi = min(offs[p + 1], n) if p + 1 < K else n
            if p == K - 1 and 3 <= K <= 5:
                _solve_main(M, offs, b, x, prev)
                break
            for i in range(lo, hi):
                ui = _u(i)
                acc = m0[ui] * b[ui]
                for k in range(2, p + 1):
                    acc -= M[k, ui] * x[_u(i - offs[k])]
                prev = acc - m1[ui] * prev
                x[ui] = prev
            lo = hi
    else:
        lo = 0
        for p in range(K):
            hi = min(offs[p + 1], n) if p + 1 < K else n
            for i in range(lo, hi):
                ui = _u(i)
                acc = m0[ui] * b[ui]
                for k in range(1, p + 1):
                    acc -= M[k, ui] * x[_u(i - offs[k])]
                x[ui] = acc
            lo = hi


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _solve_blk(M, offs, b, x):
    K, n = M.shape
    chain = K > 1 and offs[1] == 1
    q = 2 if chain else 1
    blen = offs[q] if q < K else n
    m0 = M[0]
    lo = 0
    while lo < n:
        hi = min(lo + blen, n)
        xb = x[lo:hi]
        m0b = m0[lo:hi]
        bb = b[lo:hi]
        for i in range(hi - lo):
            xb[i] = m0b[i] * bb[i]
        for k in range(q, K):
            o = offs[k]
            start = max(lo, o)  # i - o >= 0
            if hi > start:
                xs = xb[start - lo:]
                xk = x[start - o:hi - o]
                Mk = M[k, start:hi]
                for i in range(hi - start):
                    xs[i] -= Mk[i] * xk[i]
        if chain:
            m1 = M[1]
            start = max(lo, 1)
            prev = x[start - 1]
            for i in range(start, hi):
                ui = _u(i)
                prev = x[ui] - m1[ui] * prev
                x[ui] = prev
        lo = hi


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _solve_row(M, offs, b, x, blocks):
    """Forward substitution L x = b with M from :func:`_prep`:
    x_i = M[0, i] b_i - sum_{k >= 1, i >= o_k} M[k, i] x_{i - o_k}, for i = 0 .. n-1."""
    if blocks:
        _solve_blk(M, offs, b, x)
    else:
        _solve_seg(M, offs, b, x)


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _solve_pairs(L, offs, b, out, lo, hi, transposed):
    """Solve the (factor, sample) pairs lo..hi-1 (factor-major), preparing each factor once."""
    F, K, n = L.shape
    S = b.shape[0]
    M = np.empty((K, n), dtype=L.dtype)
    blocks = _use_blocks(offs, n)
    bad = 0
    chk = 0.0
    last = -1
    for p in range(lo, hi):
        f = p // S
        s = p - f * S
        if f != last:
            d = L[f, 0]
            bad += _nonpositive(d)
            chk += _checksum(d)
            if transposed:
                _prep_t(L[f], offs, M)
            else:
                _prep(L[f], offs, M)
            last = f
        x = out[s, f]
        if transposed:
            _solve_t_row(M, offs, b[s, f], x, blocks)
        else:
            _solve_row(M, offs, b[s, f], x, blocks)
        chk += _checksum(x)
    return bad, chk


@njit(cache=True, parallel=True, fastmath=_FMA, error_model="numpy")
def _solve(L, offs, b, out, transposed):
    F, K, n = L.shape
    P = F * b.shape[0]
    if P * n * K < _PARALLEL_MIN:
        return _solve_pairs(L, offs, b, out, 0, P, transposed)
    bad = 0
    chk = 0.0
    nch = _nchunks(P)
    for c in prange(nch):
        bc, cc = _solve_pairs(L, offs, b, out, c * P // nch, (c + 1) * P // nch, transposed)
        bad += bc
        chk += cc
    return bad, chk


@register("band_solve_t")
def band_solve_t(L, offs, b, out):
    """out[s, f] = L_f^{-T} b[s, f].  L (F, K, n); b, out (S, F, n). Returns (bad, checksum)."""
    return _solve(L, offs, b, out, True)


@register("band_solve")
def band_solve(L, offs, b, out):
    """out[s, f] = L_f^{-1} b[s, f].  L (F, K, n); b, out (S, F, n). Returns (bad, checksum)."""
    return _solve(L, offs, b, out, False)


# --------------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------------

@njit(cache=True, fastmath=_FMA, error_model="numpy")
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


@njit(cache=True, parallel=True, fastmath=_FMA, error_model="numpy")
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


@njit(cache=True, fastmath=_FMA, error_model="numpy")
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
@njit(cache=True, parallel=True, fastmath=_FMA, error_model="numpy")
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


# --------------------------------------------------------------------------------------------------
# Log-determinant
# --------------------------------------------------------------------------------------------------

@njit(cache=True, error_model="numpy")
def _logdet_one(d):
    """sum_i log d_i. Numba has no vector log here, so the entries are multiplied in float64 blocks of 8
    and one log is taken per block; a block with an entry outside [1e-30, 1e30] (where the product
    could leave the normal range) falls back to one log per entry."""
    n = d.shape[0]
    acc = 0.0
    i = 0
    while i + 8 <= n:
        blk = d[i:i + 8]
        lo = 1e30
        hi = 1e-30
        prod = 1.0
        for j in range(8):
            v = np.float64(blk[j])
            lo = min(lo, v)
            hi = max(hi, v)
            prod *= v
        if lo >= 1e-30 and hi <= 1e30:
            acc += math.log(prod)
        else:
            for j in range(8):
                acc += math.log(np.float64(blk[j]))
        i += 8
    for j in range(i, n):
        acc += math.log(np.float64(d[_u(j)]))
    return acc


@register("band_logdet")
@njit(cache=True, parallel=True, error_model="numpy")
def band_logdet(L, out):
    """out[f] = sum_i log L[f, 0, i]. Returns (bad, checksum)."""
    F, K, n = L.shape
    bad = 0
    chk = 0.0
    if F * n < _PARALLEL_MIN:
        for f in range(F):
            d = L[f, 0]
            bad += _nonpositive(d)
            out[f] = _logdet_one(d)
            chk += out[f]
    else:
        for f in prange(F):
            d = L[f, 0]
            bad += _nonpositive(d)
            v = _logdet_one(d)
            out[f] = v
            chk += v
    return bad, chk


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

@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _chain_coefs(Lf, a, cc):
    """a_i = 1 / L_ii^2 and c_i = a_i L_{i+1, i}^2 (float64), vectorised."""
    n = Lf.shape[1]
    d = Lf[0]
    l1 = Lf[1, 1:]
    for i in range(n):
        r = 1.0 / np.float64(d[i])
        a[i] = r * r
    for i in range(n - 1):
        v = np.float64(l1[i])
        cc[i] = a[i] * v * v


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _trace_chain(Lf, buf):
    n = Lf.shape[1]
    a = buf[0]
    cc = buf[1]
    _chain_coefs(Lf, a, cc)
    s = a[n - 1]
    tr = s
    for i in range(n - 2, -1, -1):
        ui = _u(i)
        s = a[ui] + cc[ui] * s
        tr += s
    return tr


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _trace_band(Lf, offs, Wm, t, ck, slot):
    """Forward selected inversion over a (w+1) x (w+1) ring window: slot (i mod (w+1)) holds index i;
    every index >= n keeps zeros. Returns tr(Sigma)."""
    K, n = Lf.shape
    W = offs[K - 1] + 1
    for r in range(W):
        wr = Wm[r]
        for col in range(W):
            wr[col] = 0.0
    tr = 0.0
    kmax = 0
    s0 = (n - 1) % W  # ring slot of index i
    for i in range(n - 1, -1, -1):
        while kmax + 1 < K and i + offs[kmax + 1] < n:
            kmax += 1
        rl = 1.0 / np.float64(Lf[0, _u(i)])
        for col in range(W):
            t[col] = 0.0
        # t[slot(j)] = sum_k L_{m_k, i} Sigma_{m_k, j} over the window
        for k in range(1, kmax + 1):
            o = offs[k]
            c = np.float64(Lf[k, _u(i + o)])
            row = s0 + o
            if row >= W:
                row -= W
            ck[k] = c
            slot[k] = row
            wr = Wm[_u(row)]
            for col in range(W):
                t[col] += c * wr[col]
        d = rl
        for k in range(1, kmax + 1):
            d += ck[k] * rl * t[_u(slot[k])]
        d *= rl
        ws = Wm[_u(s0)]
        for col in range(W):
            ws[col] = -rl * t[col]
        for col in range(W):
            Wm[col, _u(s0)] = ws[col]
        ws[s0] = d
        tr += d
        s0 -= 1
        if s0 < 0:
            s0 = W - 1
    return tr


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _trace_factors(L, offs, out, lo, hi):
    F, K, n = L.shape
    bad = 0
    chk = 0.0
    if K == 2 and offs[1] == 1:
        buf = np.empty((2, n))
        for f in range(lo, hi):
            v = _trace_chain(L[f], buf)
            out[f] = v
            chk += v
    else:
        W = offs[K - 1] + 1
        Wm = np.empty((W, W))
        t = np.empty(W)
        ck = np.empty(K)
        slot = np.empty(K, dtype=np.int64)
        for f in range(lo, hi):
            v = _trace_band(L[f], offs, Wm, t, ck, slot)
            out[f] = v
            chk += v
    for f in range(lo, hi):
        bad += _nonpositive(L[f, 0])
        chk += _checksum(L[f, 0])
    return bad, chk


@register("band_trace_inv")
@njit(cache=True, parallel=True, error_model="numpy")
def band_trace_inv(L, offs, out):
    """out[f] = tr((L_f L_f^T)^{-1}), exactly, in O(n K w) (O(n) for the chain); float64 inside.
    Returns (bad, checksum)."""
    F, K, n = L.shape
    W = offs[K - 1] + 1
    if F * n * K * W < _PARALLEL_MIN:
        return _trace_factors(L, offs, out, 0, F)
    bad = 0
    chk = 0.0
    nch = _nchunks(F)
    for c in prange(nch):
        bc, cc = _trace_factors(L, offs, out, c * F // nch, (c + 1) * F // nch)
        bad += bc
        chk += cc
    return bad, chk


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _trace_chain_grad(Lf, g, buf, gf):
    """Reverse mode through s_i = a_i + c_i s_{i+1}; tr = sum_i s_i."""
    n = Lf.shape[1]
    a = buf[0]
    cc = buf[1]
    s = buf[2]
    _chain_coefs(Lf, a, cc)
    acc = a[n - 1]
    s[n - 1] = acc
    for i in range(n - 2, -1, -1):
        ui = _u(i)
        acc = a[ui] + cc[ui] * acc
        s[ui] = acc
    # sb_i = g + sb_{i-1} c_{i-1};  ds_i/dL_ii = -2 s_i / L_ii;  ds_i/dL_{i+1,i} = 2 a_i L_{i+1,i} s_{i+1}
    d = Lf[0]
    l1 = Lf[1, 1:]
    g0 = gf[0]
    g1 = gf[1, 1:]
    s1 = s[1:]
    gf[1, 0] = 0.0
    sb = g
    for i in range(n - 1):
        g0[i] = -2.0 * sb * s[i] / np.float64(d[i])
        g1[i] = 2.0 * sb * a[i] * np.float64(l1[i]) * s1[i]
        sb = g + sb * cc[i]
    g0[n - 1] = -2.0 * sb * s[n - 1] / np.float64(d[n - 1])


@njit(cache=True, fastmath=_FMA_REASSOC, error_model="numpy")
def _trace_band_grad(Lf, offs, g, R, Rb, y, gf):
    """Reverse mode through the selected inversion. R[i, d] = Sigma_{i, i+d} (i + d < n) is stored by
    the forward sweep; Rb holds the adjoints of the same entries. Sigma_{m, j} with j < m is read as
    R[j, m - j], so every loop over j is split at j = m."""
    K, n = Lf.shape
    W = offs[K - 1] + 1
    # forward sweep, i = n-1 .. 0
    kmax = 0
    for i in range(n - 1, -1, -1):
        ui = _u(i)
        while kmax + 1 < K and i + offs[kmax + 1] < n:
            kmax += 1
        rl = 1.0 / np.float64(Lf[0, ui])
        jend = min(i + W, n)
        for d in range(W):
            y[d] = 0.0
        for k in range(1, kmax + 1):
            m = i + offs[k]
            c = np.float64(Lf[k, _u(m)])
            for j in range(i + 1, m):
                y[_u(j - i)] += c * R[_u(j), _u(m - j)]
            ym = y[m - i:]
            Rm = R[_u(m)]
            for t in range(jend - m):
                ym[t] += c * Rm[t]
        Ri = R[ui]
        for d in range(1, jend - i):
            Ri[d] = -rl * y[d]
        sd = rl
        for k in range(1, kmax + 1):
            o = offs[k]
            sd -= np.float64(Lf[k, _u(i + o)]) * Ri[_u(o)]
        Ri[0] = rl * sd
    # reverse sweep, i = 0 .. n-1; row i of Rb is final when step i is reached
    for i in range(n):
        Rbi = Rb[i]
        Rbi[0] = g
        for d in range(1, W):
            Rbi[d] = 0.0
    kmax = K - 1
    for i in range(n):
        while kmax > 0 and i + offs[kmax] >= n:
            kmax -= 1
        L_ii = np.float64(Lf[0, i])
        rl = 1.0 / L_ii
        jend = min(i + W, n)
        Ri = R[i]
        Rbi = Rb[i]
        yb0 = Rbi[0]
        # Sigma_ii = rl^2 - rl sum_k c_k Sigma_{i, m_k}
        ssum = 0.0
        for k in range(1, kmax + 1):
            o = offs[k]
            ssum += np.float64(Lf[k, _u(i + o)]) * Ri[_u(o)]
        rlb = yb0 * (2.0 * rl - ssum)
        for k in range(1, kmax + 1):
            o = offs[k]
            gf[k, _u(i + o)] = -yb0 * rl * Ri[_u(o)]
            Rbi[_u(o)] -= yb0 * rl * np.float64(Lf[k, _u(i + o)])
        # Sigma_{i, i+d} = -rl T_d  =>  d/drl = -T_d = Sigma_{i, i+d} L_ii
        acc0 = 0.0
        for d in range(1, jend - i):
            acc0 += Rbi[d] * Ri[d]
        rlb += L_ii * acc0
        for k in range(1, kmax + 1):
            m = i + offs[k]
            coef = -rl * np.float64(Lf[k, _u(m)])
            acc = 0.0
            for j in range(i + 1, m):
                yb = Rbi[_u(j - i)]
                acc += yb * R[_u(j), _u(m - j)]
                Rb[_u(j), _u(m - j)] += coef * yb
            Rbm = Rbi[m - i:]
            Rm = R[_u(m)]
            Rbmm = Rb[_u(m)]
            for t in range(jend - m):
                yb = Rbm[t]
                acc += yb * Rm[t]
                Rbmm[t] += coef * yb
            gf[k, _u(m)] -= rl * acc
        gf[0, i] = -rlb * rl * rl
    for k in range(1, K):
        gk = gf[k]
        for i in range(offs[k]):
            gk[i] = 0.0


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _trace_grad_factors(L, offs, g, out, lo, hi):
    F, K, n = L.shape
    if K == 2 and offs[1] == 1:
        buf = np.empty((3, n))
        for f in range(lo, hi):
            _trace_chain_grad(L[f], np.float64(g[f]), buf, out[f])
    else:
        W = offs[K - 1] + 1
        R = np.empty((n, W))
        Rb = np.empty((n, W))
        y = np.empty(W)
        for f in range(lo, hi):
            _trace_band_grad(L[f], offs, np.float64(g[f]), R, Rb, y, out[f])
    bad = 0
    chk = 0.0
    for f in range(lo, hi):
        bad += _nonpositive(L[f, 0])
        chk += _checksum(L[f, 0])
        for k in range(K):
            chk += _checksum(out[f, k])
    return bad, chk


@register("band_trace_inv_grad")
@njit(cache=True, parallel=True, error_model="numpy")
def band_trace_inv_grad(L, offs, g, out):
    """out[f] = g[f] * d tr((L_f L_f^T)^{-1}) / d L_f on the band (= -2 g (Sigma^2 L) restricted),
    zero in the slots that do not exist. L, out (F, K, n); g (F,). Returns (bad, checksum)."""
    F, K, n = L.shape
    W = offs[K - 1] + 1
    if F * n * K * W < _PARALLEL_MIN:
        return _trace_grad_factors(L, offs, g, out, 0, F)
    bad = 0
    chk = 0.0
    nch = _nchunks(F)
    for c in prange(nch):
        bc, cc = _trace_grad_factors(L, offs, g, out, c * F // nch, (c + 1) * F // nch)
        bad += bc
        chk += cc
    return bad, chk
