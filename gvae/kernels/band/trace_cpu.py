"""Numba CPU kernels: the exact trace of Sigma = (L L^T)^{-1} for banded factors, and its gradient."""
import numpy as np
from numba import prange

from ..backend import register
from ..jit import jit
from .common_cpu import (_FMA, _PARALLEL_MIN, _TB, _TRACE_GRAD_PARALLEL_MIN, _TRACE_PARALLEL_MIN, _checksum,
                         _chunk, _nchunks, _nonpositive, _u)
from .simd_cpu import _vadd, _vdiv, _vfma, _vfnma, _vgather, _vld, _vmul, _vsplat, _vst, _vstage, _vsub, _vunstage


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

@jit(fastmath=_FMA, error_model="numpy")
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


@jit(fastmath=_FMA, error_model="numpy")
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


@jit(error_model="numpy")
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

@jit
def _pitch(W):
    """Row pitch (block vectors) of the row stores: >= W and even, so that the stride of the walk along
    an anti-diagonal, pitch - 1 block vectors, is odd and spreads over every L1 set (W - 1 a power of
    two, as in the grid, would hit the same few sets)."""
    return W + (W & 1)


@jit(error_model="numpy")
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


@jit(error_model="numpy", inline="always")
def _ring_base(c, t, o, lo, dw, rp, sw):
    """Start of the affine run C[p, k] + d * T[p, k] for d in [lo, ...) in the ring: its row is
    i + o (row form, t == _TB) or i + d (entry o - d), wrapped (base sw) from d >= dw on, else rp."""
    x = o if t == _TB else lo
    return c + (sw if x >= dw else rp)


@jit(error_model="numpy")
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


@jit(fastmath=_FMA, error_model="numpy")
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
@jit(parallel=True, error_model="numpy")
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


@jit(fastmath=_FMA, error_model="numpy")
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


@jit(error_model="numpy")
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


@jit(fastmath=_FMA, error_model="numpy")
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
@jit(parallel=True, error_model="numpy")
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
