"""Numba CPU kernels: forward and backward substitution with a banded factor (L x = b, L^T x = b)."""
import numpy as np
from numba import prange

from ..backend import register
from ..jit import jit
from .common_cpu import _FMA, _PARALLEL_MIN, _checksum, _nchunks, _nonpositive, _u


# --------------------------------------------------------------------------------------------------
# Substitutions
# --------------------------------------------------------------------------------------------------

@jit(fastmath=_FMA, error_model="numpy")
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


@jit(fastmath=_FMA, error_model="numpy")
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

@jit
def _use_blocks(offs, n):
    K = offs.shape[0]
    q = 2 if K > 1 and offs[1] == 1 else 1
    return q >= K or offs[q] >= 64


@jit(fastmath=_FMA, error_model="numpy")
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


@jit(fastmath=_FMA, error_model="numpy")
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


@jit(fastmath=_FMA, error_model="numpy")
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


@jit(fastmath=_FMA, error_model="numpy")
def _solve_t_row(M, offs, b, x, blocks):
    """Backward substitution L^T x = b with M from :func:`_prep_t`:
    x_i = M[0, i] b_i - sum_{k >= 1, i + o_k < n} M[k, i] x_{i + o_k}, for i = n-1 .. 0."""
    if blocks:
        _solve_t_blk(M, offs, b, x)
    else:
        _solve_t_seg(M, offs, b, x)


@jit(fastmath=_FMA, error_model="numpy")
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


@jit(fastmath=_FMA, error_model="numpy")
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


@jit(fastmath=_FMA, error_model="numpy")
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


@jit(fastmath=_FMA, error_model="numpy")
def _solve_row(M, offs, b, x, blocks):
    """Forward substitution L x = b with M from :func:`_prep`:
    x_i = M[0, i] b_i - sum_{k >= 1, i >= o_k} M[k, i] x_{i - o_k}, for i = 0 .. n-1."""
    if blocks:
        _solve_blk(M, offs, b, x)
    else:
        _solve_seg(M, offs, b, x)


@jit(fastmath=_FMA, error_model="numpy")
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


@jit(parallel=True, fastmath=_FMA, error_model="numpy")
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
