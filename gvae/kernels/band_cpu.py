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
vectorise. ``fastmath`` is limited to ``contract`` (FMA), plus ``reassoc`` for the checksums.

The exact trace and its gradient (outside the chain) vectorise across factors instead: blocks of
``_TB`` factors run the per-factor recursion in lock-step on explicit block vectors (see the section
on the trace), split over prange chunks of whole blocks above ``_TRACE_PARALLEL_MIN`` /
``_TRACE_GRAD_PARALLEL_MIN``.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, models, register_model

from .backend import register

_FMA = {"contract"}
_u = np.uint64
_FMA_REASSOC = {"contract", "reassoc"}  # for the checksums: reordering a sum keeps NaN/inf
# prange chunks per call: enough to balance 16 threads, few enough that per-chunk set-up is negligible.
_MAX_CHUNKS = 64
# Below this much work (elements x diagonals, ~0.3 ms serially) a call runs serially: a parallel region
# costs tens of microseconds to wake the threads, and on a busy 2-core machine it can wait a whole
# scheduler tick (~8 ms) for a thread that is not running.
_PARALLEL_MIN = 1 << 18
# Factors per lock-step block of the exact trace and its gradient (see _stage), and the same ~0.3 ms of
# serial work for them, counted as F n K (w + 1): the blocked recursions do ~8x (trace) and ~2x
# (gradient) more of it per second than the per-factor loops that _PARALLEL_MIN was set for.
_TB = 8
_TRACE_PARALLEL_MIN = 1 << 21
_TRACE_GRAD_PARALLEL_MIN = 1 << 19


@njit(cache=True)
def _nchunks(p):
    return max(1, min(p, _MAX_CHUNKS))


@njit(cache=True)
def _chunk(c, nch, F, step):
    """Items [lo, hi) of chunk c of nch over F items, cut at multiples of step."""
    nb = (F + step - 1) // step
    return min(F, c * nb // nch * step), min(F, (c + 1) * nb // nch * step)


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
# which only reads Sigma entries inside the window [i, i + w], w = o_{K-1}. The trace keeps the last
# w + 1 rows of the band of Sigma; the gradient stores the whole band (n, w+1) and runs the recursion
# backwards in reverse mode, its adjoints in a window of w + 1 rows. Both run on blocks of _TB factors
# in lock-step (below). For the chain the diagonal alone satisfies
#   s_i = a_i + c_i s_{i+1},  a_i = 1 / L_ii^2,  c_i = a_i L_{i+1, i}^2,
# computed per factor (an O(n) recursion whose coefficients are vectorised over i).

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


# The general recursion is a serial chain per factor (each step needs the rows the previous ones wrote),
# so it runs on blocks of _TB factors in lock-step, the block innermost in every array: each scalar
# operation of the per-factor recursion becomes one operation on a block vector (<_TB x double>, two
# AVX2 registers), in float64 as before. LLVM does not vectorise the loops over a block by itself (it
# unrolls such short loops first and then cannot prove that the scratch arrays do not alias), so the
# block vector is an explicit type, loaded from and stored to flat float64 arrays at element offsets by
# the intrinsics below (no bounds checks; inspect_llvm shows <8 x double> throughout).
# The band values of a block are staged, float64, in S (n, K, _TB): S[i, 0, b] = 1 / L_ii,
# S[i, k, b] = L_{i + o_k, i} (0 where i + o_k >= n) of factor f0 + b, and the diagonal in D (n, _TB),
# by 8 x 8 transposes; lanes past the end of the batch repeat its last factor and their results are
# dropped (a batch of one factor costs a whole block: ~1.5x the old per-factor loop). The staging is
# O(n K) per factor against the recursion's O(n K w).

class _Block(types.Type):
    def __init__(self):
        super().__init__(name=f"f64x{_TB}")


_block = _Block()
_VFLAGS = ("contract",)


@register_model(_Block)
class _BlockModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(ir.DoubleType(), _TB))


def _flat_f64(a):
    return isinstance(a, types.Array) and a.dtype == types.float64 and a.ndim == 1 and a.layout == "C"


def _block_ptr(context, builder, aty, ary, p):
    data = context.make_array(aty)(context, builder, ary).data
    return builder.bitcast(builder.gep(data, [p]), ir.PointerType(ir.VectorType(ir.DoubleType(), _TB)))


@intrinsic
def _vld(typingctx, a, p):
    """a[p:p + _TB] as a block vector; a is a flat float64 array."""
    if not (_flat_f64(a) and isinstance(p, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_block_ptr(context, builder, sig.args[0], args[0], args[1]), align=8)
    return _block(a, p), codegen


@intrinsic
def _vst(typingctx, a, p, v):
    """a[p:p + _TB] = v."""
    if not (_flat_f64(a) and isinstance(p, types.Integer) and v == _block):
        return None

    def codegen(context, builder, sig, args):
        builder.store(args[2], _block_ptr(context, builder, sig.args[0], args[0], args[1]), align=8)
        return context.get_dummy_value()
    return types.none(a, p, v), codegen


@intrinsic
def _vsplat(typingctx, x):
    """A block vector with every lane x."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[0], sig.args[0], types.float64)
        vt = ir.VectorType(ir.DoubleType(), _TB)
        one = builder.insert_element(ir.Constant(vt, ir.Undefined), v, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), _TB), [0] * _TB))
    return _block(x), codegen


@intrinsic
def _vadd(typingctx, x, y):
    if not (x == _block and y == _block):
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1], flags=_VFLAGS)
    return _block(x, y), codegen


@intrinsic
def _vsub(typingctx, x, y):
    if not (x == _block and y == _block):
        return None

    def codegen(context, builder, sig, args):
        return builder.fsub(args[0], args[1], flags=_VFLAGS)
    return _block(x, y), codegen


@intrinsic
def _vmul(typingctx, x, y):
    if not (x == _block and y == _block):
        return None

    def codegen(context, builder, sig, args):
        return builder.fmul(args[0], args[1], flags=_VFLAGS)
    return _block(x, y), codegen


@intrinsic
def _vdiv(typingctx, x, y):
    if not (x == _block and y == _block):
        return None

    def codegen(context, builder, sig, args):
        return builder.fdiv(args[0], args[1])
    return _block(x, y), codegen


@intrinsic
def _vfma(typingctx, x, y, z):
    """x * y + z (fused)."""
    if not (x == _block and y == _block and z == _block):
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(builder.fmul(args[0], args[1], flags=_VFLAGS), args[2], flags=_VFLAGS)
    return _block(x, y, z), codegen


@intrinsic
def _vfnma(typingctx, x, y, z):
    """z - x * y (fused)."""
    if not (x == _block and y == _block and z == _block):
        return None

    def codegen(context, builder, sig, args):
        return builder.fsub(args[2], builder.fmul(args[0], args[1], flags=_VFLAGS), flags=_VFLAGS)
    return _block(x, y, z), codegen


@intrinsic
def _vgather(typingctx, a, f0, F, stride, p):
    """Lane b: a[min(f0 + b, F - 1) * stride + p] as float64 (a: flat float32 or float64 array); the
    staging loads of a block, past the batch repeating its last factor."""
    if not (isinstance(a, types.Array) and a.dtype in (types.float32, types.float64) and a.ndim == 1
            and a.layout == "C" and all(isinstance(t, types.Integer) for t in (f0, F, stride, p))):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        i64 = ir.IntType(64)
        f0v, Fv, sv, pv = (context.cast(builder, v, t, types.int64) for v, t in zip(args[1:], sig.args[1:]))
        last = builder.sub(Fv, ir.Constant(i64, 1))
        vec = ir.Constant(ir.VectorType(ir.DoubleType(), _TB), ir.Undefined)
        for b in range(_TB):
            f = builder.add(f0v, ir.Constant(i64, b))
            f = builder.select(builder.icmp_signed("<", f, last), f, last)
            x = builder.load(builder.gep(data, [builder.add(builder.mul(f, sv), pv)]))
            if sig.args[0].dtype == types.float32:
                x = builder.fpext(x, ir.DoubleType())
            vec = builder.insert_element(vec, x, ir.Constant(ir.IntType(32), b))
        return vec
    return _block(a, f0, F, stride, p), codegen


def _transpose(builder, rows):
    """IR: the _TB vectors rows[b] (each _TB long) transposed: cols[j][b] = rows[b][j]."""
    i32 = ir.IntType(32)

    def shuf(x, y, mask):
        return builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(i32, len(mask)), mask))
    if _TB == 8 and rows[0].type.element == ir.FloatType():  # AVX's 8 x 8: unpck, shufps, perm2f128
        lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
        t = [shuf(rows[2 * m], rows[2 * m + 1], h) for m in range(4) for h in (lo, hi)]
        lo, hi = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        u = [shuf(t[4 * g + s], t[4 * g + s + 2], h) for g in range(2) for s in range(2) for h in (lo, hi)]
        lo, hi = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
        return [shuf(u[j % 4], u[j % 4 + 4], lo if j < 4 else hi) for j in range(_TB)]
    # in general: merge pairs of interleaved groups until one vector holds element j of every row at
    # j * _TB + b, then cut it into the columns
    width = 1
    while len(rows) > 1:
        merged = []
        for m in range(0, len(rows), 2):
            n = rows[m].type.count
            mask = []
            for j in range(_TB):
                mask += [j * width + t for t in range(width)] + [n + j * width + t for t in range(width)]
            merged.append(shuf(rows[m], rows[m + 1], mask))
        rows = merged
        width *= 2
    return [shuf(rows[0], ir.Constant(rows[0].type, ir.Undefined), list(range(j * _TB, (j + 1) * _TB)))
            for j in range(_TB)]


def _f64_and_ints(S, a, ints):
    return (_flat_f64(S) and isinstance(a, types.Array) and a.dtype in (types.float32, types.float64)
            and a.ndim == 1 and a.layout == "C" and all(isinstance(t, types.Integer) for t in ints))


@intrinsic
def _vstage(typingctx, S, q, qs, a, f0, F, stride, p):
    """S[q + j * qs : ... + _TB] = lanes b: a[min(f0 + b, F - 1) * stride + p + j] as float64, for
    j = 0 .. _TB - 1: a _TB x _TB tile of the factors transposed (one contiguous load per factor, then
    shuffles); a: flat float32 or float64 array, S: flat float64 array."""
    if not _f64_and_ints(S, a, (q, qs, f0, F, stride, p)):
        return None

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        sdata = context.make_array(sig.args[0])(context, builder, args[0]).data
        adata = context.make_array(sig.args[3])(context, builder, args[3]).data
        qv, qsv, f0v, Fv, sv, pv = (context.cast(builder, args[j], sig.args[j], types.int64)
                                    for j in (1, 2, 4, 5, 6, 7))
        vty = ir.VectorType(adata.type.pointee, _TB)
        dty = ir.VectorType(ir.DoubleType(), _TB)
        last = builder.sub(Fv, ir.Constant(i64, 1))
        rows = []
        for b in range(_TB):
            f = builder.add(f0v, ir.Constant(i64, b))
            f = builder.select(builder.icmp_signed("<", f, last), f, last)
            ptr = builder.gep(adata, [builder.add(builder.mul(f, sv), pv)])
            rows.append(builder.load(builder.bitcast(ptr, ir.PointerType(vty)), align=4))
        for j, col in enumerate(_transpose(builder, rows)):
            if vty != dty:
                col = builder.fpext(col, dty)
            dst = builder.gep(sdata, [builder.add(qv, builder.mul(qsv, ir.Constant(i64, j)))])
            builder.store(col, builder.bitcast(dst, ir.PointerType(dty)), align=8)
        return context.get_dummy_value()
    return types.none(S, q, qs, a, f0, F, stride, p), codegen


@intrinsic
def _vunstage(typingctx, G, q, qs, a, f0, stride, p):
    """The inverse of _vstage for a full block: a[(f0 + b) * stride + p + j] = lane b of
    G[q + j * qs : ... + _TB], j = 0 .. _TB - 1, rounded to a's dtype."""
    if not _f64_and_ints(G, a, (q, qs, f0, stride, p)):
        return None

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        gdata = context.make_array(sig.args[0])(context, builder, args[0]).data
        adata = context.make_array(sig.args[3])(context, builder, args[3]).data
        qv, qsv, f0v, sv, pv = (context.cast(builder, args[j], sig.args[j], types.int64)
                                for j in (1, 2, 4, 5, 6))
        vty = ir.VectorType(adata.type.pointee, _TB)
        dty = ir.VectorType(ir.DoubleType(), _TB)
        cols = []
        for j in range(_TB):
            src = builder.gep(gdata, [builder.add(qv, builder.mul(qsv, ir.Constant(i64, j)))])
            col = builder.load(builder.bitcast(src, ir.PointerType(dty)), align=8)
            cols.append(col if vty == dty else builder.fptrunc(col, vty))
        for b, row in enumerate(_transpose(builder, cols)):
            f = builder.add(f0v, ir.Constant(i64, b))
            dst = builder.gep(adata, [builder.add(builder.mul(f, sv), pv)])
            builder.store(row, builder.bitcast(dst, ir.PointerType(vty)), align=4)
        return context.get_dummy_value()
    return types.none(G, q, qs, a, f0, stride, p), codegen


@njit(cache=True, error_model="numpy")
def _stage(L, offs, f0, S, D):
    """Stage factors f0 .. f0 + _TB - 1 of L into S and D (flat, see above); lanes past the batch
    repeat its last factor (their results are dropped)."""
    F, K, n = L.shape
    KT = K * _TB
    Kn = K * n
    Lflat = L.reshape(F * Kn)
    nt = n - n % _TB
    for i in range(0, nt, _TB):
        _vstage(D, i * _TB, _TB, Lflat, f0, F, Kn, i)
    for i in range(nt, n):
        _vst(D, i * _TB, _vgather(Lflat, f0, F, Kn, i))
    zero = _vsplat(0.0)
    for k in range(1, K):
        o = offs[k]
        m = n - o
        mt = m - m % _TB
        for i in range(0, mt, _TB):
            _vstage(S, i * KT + k * _TB, KT, Lflat, f0, F, Kn, k * n + o + i)
        for i in range(mt, m):
            _vst(S, i * KT + k * _TB, _vgather(Lflat, f0, F, Kn, k * n + o + i))
        for i in range(m, n):
            _vst(S, i * KT + k * _TB, zero)
    one = _vsplat(1.0)
    for i in range(n):
        _vst(S, i * KT, _vdiv(one, _vld(D, i * _TB)))


# Both sweeps keep rows of Sigma: row i holds Sigma_{i, i+d}, d = 0 .. w, every d computed (entries past
# index n - 1 come out as zeros, so no loop needs an edge test), in a ring of Wr rows of pitch P >= W
# block vectors: row i in slot i mod Wr. Wr = W keeps just the window of rows i .. i + w that step i
# reads; Wr = n keeps every row, as the gradient needs. Sigma_{i+o, i+d} is entry |d - o| of row
# i + min(d, o): on each segment of d between the offsets (see _segments) its address is affine in d,
# the same for every i up to the ring's wrap, where a segment splits once more (_ring_base).

@njit(cache=True)
def _pitch(W):
    """Row pitch (block vectors) of the row stores: >= W and even, so that the stride of the walk along
    an anti-diagonal, pitch - 1 block vectors, is odd and spreads over every L1 set (W - 1 a power of
    two, as in the grid, would hit the same few sets)."""
    return W + (W & 1)


@njit(cache=True, error_model="numpy")
def _segments(offs, seg, C, T):
    """Split d = 1 .. w where the address of Sigma_{i+o_k, i+d} changes form: entry o_k - d of row
    i + d for d < e_k, entry d - o_k of row i + o_k for d >= e_k. Both name the same entry at d = o_k,
    so e_k may be o_k or o_k + 1, chosen to share splits (the grid has one segment, the extended grid
    two). On segment p, d in [seg[p], seg[p+1]), the entry is element C[p, k] + d * T[p, k] counted
    from the start of row i. Returns the number of segments."""
    K = offs.shape[0]
    W = offs[K - 1] + 1
    WT = _pitch(W) * _TB
    e = np.empty(K, dtype=np.int64)
    last = 1
    for k in range(1, K):
        o = offs[k]
        e[k] = o if o == last else o + 1
        last = e[k]
    nseg = 0
    seg[0] = 1
    for kk in range(1, K + 1):
        hi = e[kk] if kk < K else W
        lo = seg[nseg]
        if hi > lo:
            for k in range(1, K):
                o = offs[k]
                if lo >= e[k]:  # entry d - o of row i + o
                    C[nseg, k] = o * (WT - _TB)
                    T[nseg, k] = _TB
                else:  # entry o - d of row i + d
                    C[nseg, k] = o * _TB
                    T[nseg, k] = WT - _TB
            nseg += 1
            seg[nseg] = hi
    return nseg


@njit(cache=True, error_model="numpy", inline="always")
def _ring_base(c, t, o, lo, dw, rp, sw):
    """Start of the affine run C[p, k] + d * T[p, k] for d in [lo, ...) in the ring: its row is
    i + o (row form, t == _TB) or i + d (entry o - d), wrapped (base sw) from d >= dw on, else rp."""
    x = o if t == _TB else lo
    return c + (sw if x >= dw else rp)


@njit(cache=True, error_model="numpy")
def _forward(S, offs, n, R, Wr, seg, C, T, nseg, tr):
    """Rows of Sigma for i = n-1 .. 0 (selected inversion) into the ring R of Wr rows;
    tr[:_TB] = tr(Sigma). The 2- and 4-term recursions (grid, extended grid) are unrolled."""
    K = offs.shape[0]
    W = offs[K - 1] + 1
    WT = _pitch(W) * _TB
    KT = K * _TB
    zero = _vsplat(0.0)
    trv = zero
    kmax = 0
    s0 = (n - 1) % Wr  # slot of row i
    for i in range(n - 1, -1, -1):
        while kmax + 1 < K and i + offs[kmax + 1] < n:
            kmax += 1
        rp = s0 * WT
        dw = Wr - s0  # rows i + d, d >= dw, have wrapped around the ring
        sw = rp - Wr * WT
        pS = i * KT
        rl = _vld(S, pS)
        nrl = _vsub(zero, rl)
        # Sigma_{i, i+d} = -rl sum_k L_{m_k, i} Sigma_{m_k, i+d}, d = 1 .. w (-rl folded into the c_k)
        if kmax == 2:
            c1 = _vmul(nrl, _vld(S, pS + _TB))
            c2 = _vmul(nrl, _vld(S, pS + 2 * _TB))
            for p in range(nseg):
                lo = seg[p]
                hi = seg[p + 1]
                t1 = T[p, 1]
                t2 = T[p, 2]
                while lo < hi:
                    e = dw if lo < dw < hi else hi
                    q1 = _ring_base(C[p, 1], t1, offs[1], lo, dw, rp, sw)
                    q2 = _ring_base(C[p, 2], t2, offs[2], lo, dw, rp, sw)
                    for d in range(lo, e):
                        _vst(R, rp + d * _TB, _vfma(c2, _vld(R, q2 + d * t2), _vmul(c1, _vld(R, q1 + d * t1))))
                    lo = e
            a = _vfma(c1, _vld(R, rp + offs[1] * _TB), _vmul(rl, rl))
            a = _vfma(c2, _vld(R, rp + offs[2] * _TB), a)
        elif kmax == 4:
            c1 = _vmul(nrl, _vld(S, pS + _TB))
            c2 = _vmul(nrl, _vld(S, pS + 2 * _TB))
            c3 = _vmul(nrl, _vld(S, pS + 3 * _TB))
            c4 = _vmul(nrl, _vld(S, pS + 4 * _TB))
            for p in range(nseg):
                lo = seg[p]
                hi = seg[p + 1]
                t1 = T[p, 1]
                t2 = T[p, 2]
                t3 = T[p, 3]
                t4 = T[p, 4]
                while lo < hi:
                    e = dw if lo < dw < hi else hi
                    q1 = _ring_base(C[p, 1], t1, offs[1], lo, dw, rp, sw)
                    q2 = _ring_base(C[p, 2], t2, offs[2], lo, dw, rp, sw)
                    q3 = _ring_base(C[p, 3], t3, offs[3], lo, dw, rp, sw)
                    q4 = _ring_base(C[p, 4], t4, offs[4], lo, dw, rp, sw)
                    for d in range(lo, e):
                        a = _vfma(c2, _vld(R, q2 + d * t2), _vmul(c1, _vld(R, q1 + d * t1)))
                        _vst(R, rp + d * _TB, _vfma(c4, _vld(R, q4 + d * t4), _vfma(c3, _vld(R, q3 + d * t3), a)))
                    lo = e
            a = _vfma(c2, _vld(R, rp + offs[2] * _TB), _vfma(c1, _vld(R, rp + offs[1] * _TB), _vmul(rl, rl)))
            a = _vfma(c4, _vld(R, rp + offs[4] * _TB), _vfma(c3, _vld(R, rp + offs[3] * _TB), a))
        else:
            for p in range(nseg):
                lo = seg[p]
                hi = seg[p + 1]
                while lo < hi:
                    e = dw if lo < dw < hi else hi
                    for d in range(lo, e):
                        a = zero
                        for k in range(1, kmax + 1):
                            q = _ring_base(C[p, k], T[p, k], offs[k], lo, dw, rp, sw)
                            a = _vfma(_vld(S, pS + k * _TB), _vld(R, q + d * T[p, k]), a)
                        _vst(R, rp + d * _TB, _vmul(nrl, a))
                    lo = e
            a = _vmul(rl, rl)
            for k in range(1, kmax + 1):
                a = _vfma(_vmul(nrl, _vld(S, pS + k * _TB)), _vld(R, rp + offs[k] * _TB), a)
        # Sigma_ii = rl (rl - sum_k L_{m_k, i} Sigma_{i, m_k}), computed above as rl^2 + sum_k c_k' ...
        _vst(R, rp, a)
        trv = _vadd(trv, a)
        s0 = s0 - 1 if s0 > 0 else Wr - 1
    _vst(tr, 0, trv)


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
    elif hi > lo:
        W = offs[K - 1] + 1
        S = np.empty(n * K * _TB)
        D = np.empty(n * _TB)
        R = np.empty(W * _pitch(W) * _TB)
        seg = np.empty(K + 1, dtype=np.int64)
        C = np.empty((K, K), dtype=np.int64)
        T = np.empty((K, K), dtype=np.int64)
        nseg = _segments(offs, seg, C, T)
        tr = np.empty(_TB)
        for f0 in range(lo, hi, _TB):
            _stage(L, offs, f0, S, D)
            _forward(S, offs, n, R, W, seg, C, T, nseg, tr)
            for b in range(min(_TB, hi - f0)):
                v = tr[b]
                out[f0 + b] = v
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
    chain = K == 2 and offs[1] == 1
    step = 1 if chain else _TB
    if F * n * K * W < (_PARALLEL_MIN if chain else _TRACE_PARALLEL_MIN) or F <= step:
        return _trace_factors(L, offs, out, 0, F)
    bad = 0
    chk = 0.0
    nch = _nchunks((F + step - 1) // step)
    for c in prange(nch):
        lo, hi = _chunk(c, nch, F, step)
        bc, cc = _trace_factors(L, offs, out, lo, hi)
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


@njit(cache=True, error_model="numpy")
def _reverse(S, D, offs, n, R, Rb, seg, C, T, nseg, gv, G):
    """Reverse mode through the recursion of _forward, whose rows of Sigma are all in R (Wr = n); the
    adjoints of the same entries (g on the diagonal) live in a ring Rb of W rows, row i final at step
    i = 0 .. n-1, its slot then reset for row i + W. G (n, K, _TB), flat: G[i, k] = g dtr/dL_{i, i-o_k}
    (the entries i < o_k are left alone)."""
    K = offs.shape[0]
    W = offs[K - 1] + 1
    WT = _pitch(W) * _TB
    KT = K * _TB
    zero = _vsplat(0.0)
    gvec = _vld(gv, 0)
    for q in range(0, W * WT, _TB):
        _vst(Rb, q, zero)
    for q in range(0, W * WT, WT):
        _vst(Rb, q, gvec)
    kmax = K - 1
    s0 = 0  # slot of adjoint row i
    for i in range(n):
        while kmax > 0 and i + offs[kmax] >= n:
            kmax -= 1
        rp = i * WT
        bp = s0 * WT
        dw = W - s0  # adjoint rows i + d, d >= dw, have wrapped around the ring
        sw = bp - W * WT
        pS = i * KT
        rl = _vld(S, pS)
        nrl = _vsub(zero, rl)
        yb0 = _vld(Rb, bp)
        t0 = _vmul(yb0, rl)
        nt0 = _vsub(zero, t0)
        # Sigma_ii = rl^2 - rl sum_k c_k Sigma_{i, m_k}
        ssum = zero
        for k in range(1, kmax + 1):
            o = offs[k]
            ck = _vld(S, pS + k * _TB)
            r = _vld(R, rp + o * _TB)
            ssum = _vfma(ck, r, ssum)
            _vst(G, (i + o) * KT + k * _TB, _vmul(nt0, r))
            _vst(Rb, bp + o * _TB, _vfnma(t0, ck, _vld(Rb, bp + o * _TB)))
        rlb = _vmul(yb0, _vsub(_vadd(rl, rl), ssum))
        # Sigma_{i, i+d} = -rl T_d, T_d = sum_k c_k Sigma_{m_k, i+d}: to rl (d/drl = -T_d = L_ii
        # Sigma_{i, i+d}, summed in acc0), to c_k and to those entries
        acc0 = zero
        if kmax == 2:
            e1 = _vmul(nrl, _vld(S, pS + _TB))
            e2 = _vmul(nrl, _vld(S, pS + 2 * _TB))
            a1 = zero
            a2 = zero
            for p in range(nseg):
                lo = seg[p]
                hi = seg[p + 1]
                t1 = T[p, 1]
                t2 = T[p, 2]
                while lo < hi:
                    e = dw if lo < dw < hi else hi
                    c = C[p, 1]
                    q1 = rp + c
                    u1 = _ring_base(c, t1, offs[1], lo, dw, bp, sw)
                    c = C[p, 2]
                    q2 = rp + c
                    u2 = _ring_base(c, t2, offs[2], lo, dw, bp, sw)
                    for d in range(lo, e):
                        yb = _vld(Rb, bp + d * _TB)
                        acc0 = _vfma(yb, _vld(R, rp + d * _TB), acc0)
                        a1 = _vfma(yb, _vld(R, q1 + d * t1), a1)
                        x = u1 + d * t1
                        _vst(Rb, x, _vfma(e1, yb, _vld(Rb, x)))
                        a2 = _vfma(yb, _vld(R, q2 + d * t2), a2)
                        x = u2 + d * t2
                        _vst(Rb, x, _vfma(e2, yb, _vld(Rb, x)))
                    lo = e
            x = (i + offs[1]) * KT + _TB
            _vst(G, x, _vfnma(rl, a1, _vld(G, x)))
            x = (i + offs[2]) * KT + 2 * _TB
            _vst(G, x, _vfnma(rl, a2, _vld(G, x)))
        elif kmax == 4:
            e1 = _vmul(nrl, _vld(S, pS + _TB))
            e2 = _vmul(nrl, _vld(S, pS + 2 * _TB))
            e3 = _vmul(nrl, _vld(S, pS + 3 * _TB))
            e4 = _vmul(nrl, _vld(S, pS + 4 * _TB))
            a1 = zero
            a2 = zero
            a3 = zero
            a4 = zero
            for p in range(nseg):
                lo = seg[p]
                hi = seg[p + 1]
                t1 = T[p, 1]
                t2 = T[p, 2]
                t3 = T[p, 3]
                t4 = T[p, 4]
                while lo < hi:
                    e = dw if lo < dw < hi else hi
                    c = C[p, 1]
                    q1 = rp + c
                    u1 = _ring_base(c, t1, offs[1], lo, dw, bp, sw)
                    c = C[p, 2]
                    q2 = rp + c
                    u2 = _ring_base(c, t2, offs[2], lo, dw, bp, sw)
                    c = C[p, 3]
                    q3 = rp + c
                    u3 = _ring_base(c, t3, offs[3], lo, dw, bp, sw)
                    c = C[p, 4]
                    q4 = rp + c
                    u4 = _ring_base(c, t4, offs[4], lo, dw, bp, sw)
                    for d in range(lo, e):
                        yb = _vld(Rb, bp + d * _TB)
                        acc0 = _vfma(yb, _vld(R, rp + d * _TB), acc0)
                        a1 = _vfma(yb, _vld(R, q1 + d * t1), a1)
                        x = u1 + d * t1
                        _vst(Rb, x, _vfma(e1, yb, _vld(Rb, x)))
                        a2 = _vfma(yb, _vld(R, q2 + d * t2), a2)
                        x = u2 + d * t2
                        _vst(Rb, x, _vfma(e2, yb, _vld(Rb, x)))
                        a3 = _vfma(yb, _vld(R, q3 + d * t3), a3)
                        x = u3 + d * t3
                        _vst(Rb, x, _vfma(e3, yb, _vld(Rb, x)))
                        a4 = _vfma(yb, _vld(R, q4 + d * t4), a4)
                        x = u4 + d * t4
                        _vst(Rb, x, _vfma(e4, yb, _vld(Rb, x)))
                    lo = e
            x = (i + offs[1]) * KT + _TB
            _vst(G, x, _vfnma(rl, a1, _vld(G, x)))
            x = (i + offs[2]) * KT + 2 * _TB
            _vst(G, x, _vfnma(rl, a2, _vld(G, x)))
            x = (i + offs[3]) * KT + 3 * _TB
            _vst(G, x, _vfnma(rl, a3, _vld(G, x)))
            x = (i + offs[4]) * KT + 4 * _TB
            _vst(G, x, _vfnma(rl, a4, _vld(G, x)))
        else:
            for d in range(1, W):
                acc0 = _vfma(_vld(Rb, bp + d * _TB), _vld(R, rp + d * _TB), acc0)
            for k in range(1, kmax + 1):
                e1 = _vmul(nrl, _vld(S, pS + k * _TB))
                a1 = zero
                for p in range(nseg):
                    lo = seg[p]
                    hi = seg[p + 1]
                    t1 = T[p, k]
                    while lo < hi:
                        e = dw if lo < dw < hi else hi
                        c = C[p, k]
                        q1 = rp + c
                        u1 = _ring_base(c, t1, offs[k], lo, dw, bp, sw)
                        for d in range(lo, e):
                            yb = _vld(Rb, bp + d * _TB)
                            a1 = _vfma(yb, _vld(R, q1 + d * t1), a1)
                            x = u1 + d * t1
                            _vst(Rb, x, _vfma(e1, yb, _vld(Rb, x)))
                        lo = e
                x = (i + offs[k]) * KT + k * _TB
                _vst(G, x, _vfnma(rl, a1, _vld(G, x)))
        rlb = _vfma(_vld(D, i * _TB), acc0, rlb)
        _vst(G, pS, _vsub(zero, _vmul(rlb, _vmul(rl, rl))))
        # slot s0 now takes adjoint row i + W
        _vst(Rb, bp, gvec)
        for q in range(bp + _TB, bp + WT, _TB):
            _vst(Rb, q, zero)
        s0 = s0 + 1 if s0 < W - 1 else 0


@njit(cache=True, fastmath=_FMA, error_model="numpy")
def _trace_grad_factors(L, offs, g, out, lo, hi):
    F, K, n = L.shape
    if K == 2 and offs[1] == 1:
        buf = np.empty((3, n))
        for f in range(lo, hi):
            _trace_chain_grad(L[f], np.float64(g[f]), buf, out[f])
    elif hi > lo:
        W = offs[K - 1] + 1
        KT = K * _TB
        S = np.empty(n * KT)
        D = np.empty(n * _TB)
        R = np.empty(n * _pitch(W) * _TB)
        Rb = np.empty(W * _pitch(W) * _TB)
        G = np.empty(n * KT)
        seg = np.empty(K + 1, dtype=np.int64)
        C = np.empty((K, K), dtype=np.int64)
        T = np.empty((K, K), dtype=np.int64)
        nseg = _segments(offs, seg, C, T)
        gv = np.empty(_TB)
        tr = np.empty(_TB)
        outflat = out.reshape(F * K * n)
        for f0 in range(lo, hi, _TB):
            nf = min(_TB, hi - f0)
            _stage(L, offs, f0, S, D)
            for b in range(_TB):
                gv[b] = g[f0 + b] if b < nf else 0.0
            _forward(S, offs, n, R, n, seg, C, T, nseg, tr)
            _reverse(S, D, offs, n, R, Rb, seg, C, T, nseg, gv, G)
            for b in range(nf):
                gf = out[f0 + b]
                for k in range(K):
                    gk = gf[k]
                    for i in range(offs[k]):
                        gk[i] = 0.0
            # G[i, k, b] -> out[f0 + b, k, i] for i >= o_k: 8 x 8 tiles when the block is full
            for k in range(K):
                o = offs[k]
                i0 = o
                if nf == _TB:
                    i0 = n - (n - o) % _TB
                    for i in range(o, i0, _TB):
                        _vunstage(G, i * KT + k * _TB, KT, outflat, f0, K * n, k * n + i)
                for b in range(nf):
                    gk = out[f0 + b, k]
                    Gk = G[k * _TB + b:]
                    for i in range(i0, n):
                        gk[i] = Gk[i * KT]
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
    chain = K == 2 and offs[1] == 1
    step = 1 if chain else _TB
    if F * n * K * W < (_PARALLEL_MIN if chain else _TRACE_GRAD_PARALLEL_MIN) or F <= step:
        return _trace_grad_factors(L, offs, g, out, 0, F)
    bad = 0
    chk = 0.0
    nch = _nchunks((F + step - 1) // step)
    for c in prange(nch):
        lo, hi = _chunk(c, nch, F, step)
        bc, cc = _trace_grad_factors(L, offs, g, out, lo, hi)
        bad += bc
        chk += cc
    return bad, chk
