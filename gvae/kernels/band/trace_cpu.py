"""Numba CPU kernels: the exact diagonal and trace of Sigma = (L L^T)^{-1} for banded factors, and their
gradients, from one recursion: the forward sweep yields every Sigma_ii (the trace is their sum), and its
reverse mode takes an adjoint per Sigma_ii (the trace's gradient gives all of them the same g)."""
from collections import namedtuple

import numpy as np

from ..backend import register
from ..jit import jit
from ..numba_compat import tuple_setitem
from .common_cpu import _FMA, _TB, _checksum, _nonpositive, _u
from .driver_cpu import _PARALLEL_MIN, driver
from .simd_cpu import simd
from .variants_cpu import specialise, template


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
def _diag_chain(Lf, buf, s):
    """s[i] = Sigma_ii of one chain factor (s: a row of n, any float dtype); returns their sum, the trace
    (the store rides in the shadow of the recursion's serial FMA)."""
    n = Lf.shape[1]
    a = buf[0]
    cc = buf[1]
    _chain_coefs(Lf, a, cc)
    v = a[n - 1]
    s[n - 1] = v
    tr = v
    for i in range(n - 2, -1, -1):
        ui = _u(i)
        v = a[ui] + cc[ui] * v
        s[ui] = v
        tr += v
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
# by _TB x _TB transposes; lanes past the end of the batch repeat its last factor and their results are
# dropped. The staging is O(n K) per factor against the recursion's O(n K w). The functions from here
# to _grad_blocks are templates, compiled for _TB = 8 lanes and for 1 (see _LOCKSTEP below).


@template(error_model="numpy")
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
# i + min(d, o): on each run of d between the offsets (see _runs) its address is affine in d, the same
# for every i up to the ring's wrap, where a run splits once more (_ring_base).

@jit
def _pitch(W):
    """Row pitch (block vectors) of the row stores: >= W and even, so that the stride of the walk along
    an anti-diagonal, pitch - 1 block vectors, is odd and spreads over every L1 set (W - 1 a power of
    two, as in the grid, would hit the same few sets)."""
    return W + (W & 1)


# The lock-step plan of a stencil (_runs): the runs of d on which step i reads Sigma_{i+o_k, i+d} at an
# address affine in d, the same for every step and every lane. Run p is d in [bounds[p], bounds[p+1]),
# p < count, where term k's entry is element origin[p, k] + d * stride[p, k] counted from the start of
# row i. The sweeps take it as one argument: a tuple costs nothing in Numba (its fields are read as the
# separate arguments were), where a jitclass would be a heap object reached through a pointer.
Runs = namedtuple("Runs", ["bounds", "origin", "stride", "count"])


@template(error_model="numpy")
def _runs(offs):
    """The :data:`Runs` of d = 1 .. w for the offsets offs: split where the address of Sigma_{i+o_k, i+d}
    changes form, entry o_k - d of row i + d for d < e_k, entry d - o_k of row i + o_k for d >= e_k. Both
    name the same entry at d = o_k, so e_k may be o_k or o_k + 1, chosen to share splits (the grid has
    one run, the extended grid two)."""
    K = offs.shape[0]
    W = offs[K - 1] + 1
    WT = _pitch(W) * _TB
    bounds = np.empty(K + 1, dtype=np.int64)
    origin = np.empty((K, K), dtype=np.int64)
    stride = np.empty((K, K), dtype=np.int64)
    e = np.empty(K, dtype=np.int64)
    last = 1
    for k in range(1, K):
        o = offs[k]
        e[k] = o if o == last else o + 1
        last = e[k]
    count = 0
    bounds[0] = 1
    for kk in range(1, K + 1):
        hi = e[kk] if kk < K else W
        lo = bounds[count]
        if hi > lo:
            for k in range(1, K):
                o = offs[k]
                if lo >= e[k]:  # entry d - o of row i + o
                    origin[count, k] = o * (WT - _TB)
                    stride[count, k] = _TB
                else:  # entry o - d of row i + d
                    origin[count, k] = o * _TB
                    stride[count, k] = WT - _TB
            count += 1
            bounds[count] = hi
    return Runs(bounds, origin, stride, count)


@template(error_model="numpy", inline="always")
def _ring_base(c, t, o, lo, dw, rp, sw):
    """Start of the affine run c + d * t (origin[p, k] and stride[p, k] of :data:`Runs`) for d in
    [lo, ...) in the ring: its row is i + o (row form, t == _TB) or i + d (entry o - d), wrapped (base sw)
    from d >= dw on, else rp."""
    x = o if t == _TB else lo
    return c + (sw if x >= dw else rp)


# The four sweeps (_forward, _forward_rows, _reverse, _reverse_rows) take one argument order: the
# factor (S, offs, n), the rows of Sigma (R and where they start), the lock-step plan (runs),
# the vectors they read and write, then the rows lo .. hi - 1 (the forward ones taken from hi - 1 down).
#
# Step i's sums over its terms k = 1 .. kmax (kmax = K - 1 but in the last w rows) run in passes over d,
# each over nt consecutive terms with nt a literal, so that LLVM unrolls the loop over them and keeps
# their coefficients and addresses in registers (tuples). With 3 to 5 diagonals (grid, extended grid)
# the rows that have all their terms take one pass, kmax and nt literals; every other row takes one
# pass per term. The forward sweep and its reverse mode walk the same runs of d with different bodies:
# a shared loop would need the body passed as a jitted function, which Numba's cache cannot hold, and
# a helper called per row pays Numba's reference counting of its array arguments at every call.

@template(error_model="numpy")
def _forward_rows(S, offs, n, R, Wr, base, runs, dg, lo, hi, kmax, nt):
    """Steps i = hi-1 .. lo of _forward, rows with the terms k = 1 .. kmax (kmax = -1: each row its
    own), in passes of nt terms; Sigma_ii also into dg."""
    K = offs.shape[0]
    W = offs[K - 1] + 1
    WT = _pitch(W) * _TB
    KT = K * _TB
    zero = _vsplat(0.0)
    s0 = (hi - 1 - base) % Wr  # slot of row i
    km = 0 if kmax < 0 else kmax
    for i in range(hi - 1, lo - 1, -1):
        if kmax < 0:
            while km + 1 < K and i + offs[km + 1] < n:
                km += 1
        rp = s0 * WT
        dw = Wr - s0  # rows i + d, d >= dw, have wrapped around the ring
        sw = rp - Wr * WT
        pS = i * KT
        rl = _vld(S, pS)
        nrl = _vsub(zero, rl)
        # Sigma_{i, i+d} = -rl sum_k L_{m_k, i} Sigma_{m_k, i+d}, d = 1 .. w (zero without terms)
        if km == 0:
            for d in range(1, W):
                _vst(R, rp + d * _TB, zero)
        for k0 in range(1, km + 1, nt):
            c = _repeat(zero, nt)  # c_k = -rl L_{m_k, i}
            for j in range(nt):
                c = tuple_setitem(c, j, _vmul(nrl, _vld(S, pS + (k0 + j) * _TB)))
            for p in range(runs.count):
                dlo = runs.bounds[p]
                dhi = runs.bounds[p + 1]
                t = _repeat(0, nt)
                for j in range(nt):
                    t = tuple_setitem(t, j, runs.stride[p, k0 + j])
                while dlo < dhi:
                    e = dw if dlo < dw < dhi else dhi
                    q = t
                    for j in range(nt):
                        q = tuple_setitem(q, j, _ring_base(runs.origin[p, k0 + j], t[j], offs[k0 + j], dlo, dw, rp,
                                                           sw))
                    for d in range(dlo, e):
                        a = zero if k0 == 1 else _vld(R, rp + d * _TB)
                        for j in range(nt):
                            a = _vfma(c[j], _vld(R, q[j] + d * t[j]), a)
                        _vst(R, rp + d * _TB, a)
                    dlo = e
        # Sigma_ii = rl (rl - sum_k L_{m_k, i} Sigma_{i, m_k})
        a = _vmul(rl, rl)
        for k in range(1, km + 1):
            a = _vfma(_vmul(nrl, _vld(S, pS + k * _TB)), _vld(R, rp + offs[k] * _TB), a)
        _vst(R, rp, a)
        _vst(dg, i * _TB, a)
        s0 = s0 - 1 if s0 > 0 else Wr - 1


@template(error_model="numpy")
def _forward(S, offs, n, R, Wr, base, runs, dg, lo, hi):
    """Rows of Sigma for i = hi-1 .. lo (selected inversion; rows hi .. hi + w - 1 already in R) into
    the ring R of Wr rows, row i in slot (i - base) mod Wr; dg (n, _TB), flat: dg[i, b] = Sigma_ii of
    lane b."""
    K = offs.shape[0]
    full = n - offs[K - 1] if 3 <= K <= 5 else 0  # rows i < full: all terms, one pass
    t = max(lo, min(hi, full))
    _forward_rows(S, offs, n, R, Wr, base, runs, dg, t, hi, -1, 1)
    if K == 3:
        _forward_rows(S, offs, n, R, Wr, base, runs, dg, lo, t, 2, 2)
    elif K == 4:
        _forward_rows(S, offs, n, R, Wr, base, runs, dg, lo, t, 3, 3)
    elif K == 5:
        _forward_rows(S, offs, n, R, Wr, base, runs, dg, lo, t, 4, 4)


@template(fastmath=_FMA, error_model="numpy")
def _window_blocks(L, offs, out, lo, hi):
    """Factors lo .. hi-1 by the window recursion, in lock-step blocks of _TB factors: out (F, n) their
    diagonals, or out (F, 1) their traces (the two agree for n = 1); returns the sum of what was written."""
    F, K, n = L.shape
    chk = 0.0
    if hi > lo:
        W = offs[K - 1] + 1
        S = np.empty(n * K * _TB)
        D = np.empty(n * _TB)
        R = np.empty(W * _pitch(W) * _TB)
        dg = np.empty(n * _TB)
        runs = _runs(offs)
        tr = np.empty(_TB)
        diag = out.shape[1] > 1
        for f0 in range(lo, hi, _TB):
            nf = min(_TB, hi - f0)
            _stage(L, offs, f0, S, D)
            _forward(S, offs, n, R, W, 0, runs, dg, 0, n)
            if diag:
                _unstage_rows(dg, out.reshape(F * n), f0, nf, n)
            else:
                trv = _vsplat(0.0)
                for i in range(n - 1, -1, -1):  # the order in which the rows were found
                    trv = _vadd(trv, _vld(dg, i * _TB))
                _vst(tr, 0, trv)
            for b in range(nf):
                if diag:
                    chk += _checksum(out[f0 + b])
                else:
                    out[f0 + b, 0] = tr[b]
                    chk += tr[b]
    return chk


@template(error_model="numpy")
def _unstage_rows(X, a, f0, nf, n):
    """a[(f0 + b) * n + i] = X[i * _TB + b] for the nf lanes that hold factors (8 x 8 tiles when the block
    is full), rounded to a's dtype: the inverse of staging one row per factor."""
    i0 = 0
    if nf == _TB:
        i0 = n - n % _TB
        for i in range(0, i0, _TB):
            _vunstage(X, i * _TB, _TB, a, f0, n, i)
    for b in range(nf):
        for i in range(i0, n):
            a[(f0 + b) * n + i] = X[i * _TB + b]


@jit(fastmath=_FMA, error_model="numpy")
def _chain_grad(Lf, g, buf, gf):
    """gf = d(sum_i g_i s_i)/dL_f by reverse mode through s_i = a_i + c_i s_{i+1}; g has n entries, or
    one for all (the trace's gradient)."""
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
    # sb_i = g_i + sb_{i-1} c_{i-1};  ds_i/dL_ii = -2 s_i / L_ii;  ds_i/dL_{i+1,i} = 2 a_i L_{i+1,i} s_{i+1}
    gi = 1 if g.shape[0] > 1 else 0  # g's stride over i
    d = Lf[0]
    l1 = Lf[1, 1:]
    g0 = gf[0]
    g1 = gf[1, 1:]
    s1 = s[1:]
    gf[1, 0] = 0.0
    sb = np.float64(g[0])
    for i in range(n - 1):
        gn = np.float64(g[(i + 1) * gi])  # read before the stores to gf, which might alias g
        g0[i] = -2.0 * sb * s[i] / np.float64(d[i])
        g1[i] = 2.0 * sb * a[i] * np.float64(l1[i]) * s1[i]
        sb = gn + sb * cc[i]
    g0[n - 1] = -2.0 * sb * s[n - 1] / np.float64(d[n - 1])


@template(error_model="numpy")
def _reverse_rows(S, D, offs, n, R, r0, Rb, runs, gd, G, lo, hi, kmax, nt):
    """Steps i = lo .. hi-1 of _reverse, rows with the terms k = 1 .. kmax (kmax = -1: each row its
    own), in passes of nt terms as in _forward_rows."""
    K = offs.shape[0]
    W = offs[K - 1] + 1
    WT = _pitch(W) * _TB
    KT = K * _TB
    zero = _vsplat(0.0)
    s0 = lo % W  # slot of adjoint row i
    km = K - 1 if kmax < 0 else kmax
    for i in range(lo, hi):
        if kmax < 0:
            while km > 0 and i + offs[km] >= n:
                km -= 1
        rp = (i - r0) * WT
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
        for k in range(1, km + 1):
            o = offs[k]
            ck = _vld(S, pS + k * _TB)
            r = _vld(R, rp + o * _TB)
            ssum = _vfma(ck, r, ssum)
            _vst(G, (i + o) * KT + k * _TB, _vmul(nt0, r))
            _vst(Rb, bp + o * _TB, _vfnma(t0, ck, _vld(Rb, bp + o * _TB)))
        rlb = _vmul(yb0, _vsub(_vadd(rl, rl), ssum))
        # Sigma_{i, i+d} = -rl T_d, T_d = sum_k c_k Sigma_{m_k, i+d}: to rl (d/drl = -T_d = L_ii
        # Sigma_{i, i+d}, summed in acc0 by the first pass), to c_k and to those entries
        acc0 = zero
        if km == 0:
            for d in range(1, W):
                acc0 = _vfma(_vld(Rb, bp + d * _TB), _vld(R, rp + d * _TB), acc0)
        for k0 in range(1, km + 1, nt):
            e = _repeat(zero, nt)  # -rl c_k
            for j in range(nt):
                e = tuple_setitem(e, j, _vmul(nrl, _vld(S, pS + (k0 + j) * _TB)))
            a = _repeat(zero, nt)
            for p in range(runs.count):
                dlo = runs.bounds[p]
                dhi = runs.bounds[p + 1]
                t = _repeat(0, nt)
                for j in range(nt):
                    t = tuple_setitem(t, j, runs.stride[p, k0 + j])
                while dlo < dhi:
                    end = dw if dlo < dw < dhi else dhi
                    q = t
                    u = t
                    for j in range(nt):
                        c = runs.origin[p, k0 + j]
                        q = tuple_setitem(q, j, rp + c)
                        u = tuple_setitem(u, j, _ring_base(c, t[j], offs[k0 + j], dlo, dw, bp, sw))
                    for d in range(dlo, end):
                        yb = _vld(Rb, bp + d * _TB)
                        if k0 == 1:
                            acc0 = _vfma(yb, _vld(R, rp + d * _TB), acc0)
                        for j in range(nt):
                            a = tuple_setitem(a, j, _vfma(yb, _vld(R, q[j] + d * t[j]), a[j]))
                            x = u[j] + d * t[j]
                            _vst(Rb, x, _vfma(e[j], yb, _vld(Rb, x)))
                    dlo = end
            for j in range(nt):
                k = k0 + j
                x = (i + offs[k]) * KT + k * _TB
                _vst(G, x, _vfnma(rl, a[j], _vld(G, x)))
        rlb = _vfma(_vld(D, i * _TB), acc0, rlb)
        _vst(G, pS, _vsub(zero, _vmul(rlb, _vmul(rl, rl))))
        # slot s0 now takes adjoint row i + W
        _vst(Rb, bp, _vld(gd, (i + W) * _TB))
        for q in range(bp + _TB, bp + WT, _TB):
            _vst(Rb, q, zero)
        s0 = s0 + 1 if s0 < W - 1 else 0


@template(error_model="numpy")
def _reverse_start(offs, Rb, gd):
    """The adjoint ring Rb of _reverse before step 0: rows 0 .. w, g_i on their diagonals."""
    K = offs.shape[0]
    W = offs[K - 1] + 1
    WT = _pitch(W) * _TB
    zero = _vsplat(0.0)
    for q in range(0, W * WT, _TB):
        _vst(Rb, q, zero)
    for r in range(W):
        _vst(Rb, r * WT, _vld(gd, r * _TB))


@template(error_model="numpy")
def _reverse(S, D, offs, n, R, r0, Rb, runs, gd, G, lo, hi):
    """Steps i = lo .. hi-1 of the reverse mode through the recursion of _forward, in order from 0 (see
    _reverse_start) to n-1: step i reads rows i .. i + w of Sigma, row r in R at row r - r0. The adjoints
    of the same entries (g_i on the diagonal Sigma_ii, from gd (n + W, _TB), flat, its rows from n on
    zero) live in a ring Rb of W rows, row i final at step i, its slot then reset for row i + W.
    G (n, K, _TB), flat: G[i, k] = d(sum_j g_j Sigma_jj)/dL_{i, i-o_k} (the entries i < o_k are left
    alone)."""
    K = offs.shape[0]
    full = n - offs[K - 1] if 3 <= K <= 5 else 0  # rows i < full: all terms, one pass
    t = max(lo, min(hi, full))
    if K == 3:
        _reverse_rows(S, D, offs, n, R, r0, Rb, runs, gd, G, lo, t, 2, 2)
    elif K == 4:
        _reverse_rows(S, D, offs, n, R, r0, Rb, runs, gd, G, lo, t, 3, 3)
    elif K == 5:
        _reverse_rows(S, D, offs, n, R, r0, Rb, runs, gd, G, lo, t, 4, 4)
    _reverse_rows(S, D, offs, n, R, r0, Rb, runs, gd, G, t, hi, -1, 1)


@template(fastmath=_FMA, error_model="numpy")
def _grad_blocks(L, offs, g, out, lo, hi, ks):
    """out[lo:hi] = d(sum_i g_i Sigma_ii)/dL by reverse mode through the window recursion, in lock-step
    blocks of _TB factors; g (F, n), or (F, 1) for one g per factor (the trace). The rows of Sigma are
    taken in segments of ks rows (see _segment_rows), m = ceil(n / ks) of them: the scratch is dominated
    by R, the rows of one segment and the w above it, min(ks + w, n) * _pitch(W) * _TB float64, and by
    CP, w rows at each of the m - 1 segment boundaries, (m - 1) * w * _pitch(W) * _TB float64."""
    F, K, n = L.shape
    if hi > lo:
        W = offs[K - 1] + 1
        w = W - 1
        WT = _pitch(W) * _TB
        KT = K * _TB
        m = (n + ks - 1) // ks
        rows = min(ks + w, n)
        S = np.empty(n * KT)
        D = np.empty(n * _TB)
        R = np.empty(rows * WT)
        CP = np.empty((m - 1) * w * WT)
        Rb = np.empty(W * _pitch(W) * _TB)
        G = np.empty(n * KT)
        runs = _runs(offs)
        dg = np.empty(n * _TB)
        gd = np.zeros((n + W) * _TB)  # rows from n on stay zero: adjoints of rows past the end
        gi = 1 if g.shape[1] > 1 else 0  # g's stride over i
        outflat = out.reshape(F * K * n)
        for f0 in range(lo, hi, _TB):
            nf = min(_TB, hi - f0)
            _stage(L, offs, f0, S, D)
            for i in range(n):
                for b in range(_TB):
                    gd[i * _TB + b] = g[f0 + b, i * gi] if b < nf else 0.0
            # Forward, segments m-1 .. 0, each into R from row b on (row r in slot r - b), above it the
            # first w rows of the segment before, which are also kept in CP as that segment's start.
            for j in range(m - 1, -1, -1):
                b = j * ks
                e = min(b + ks, n)
                c = min(w, n - e) * WT
                for q in range(c - 1, -1, -1):  # slots 0 .. to ks .. (downwards: they overlap for ks < w)
                    R[ks * WT + q] = R[q]
                _forward(S, offs, n, R, rows, b, runs, dg, b, e)
                if j > 0:
                    CP[(j - 1) * w * WT:(j - 1) * w * WT + min(w, n - b) * WT] = R[:min(w, n - b) * WT]
            # Reverse, segments 0 .. m-1, each but the first (still in R) recomputed from the start of
            # the one above, kept in CP: the forward sweep twice (less segment 0), always in the same
            # operations, so the result does not depend on ks.
            _reverse_start(offs, Rb, gd)
            for j in range(m):
                b = j * ks
                e = min(b + ks, n)
                if j > 0:
                    c = min(w, n - e) * WT
                    R[ks * WT:ks * WT + c] = CP[j * w * WT:j * w * WT + c]
                    _forward(S, offs, n, R, rows, b, runs, dg, b, e)
                _reverse(S, D, offs, n, R, b, Rb, runs, gd, G, b, e)
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


# The lock-step width is a compile-time choice: the templates above compiled for _TB lanes and for one.
# Every lane of a block costs its scratch whether or not it holds a factor (lanes past the batch repeat
# its last factor): for the forward sweep a window of w + 1 rows, small, so it always runs _TB lanes; for
# the gradient the rows of Sigma, (n, pitch) float64 when all are kept, so it runs _TB lanes only while
# they fit in _SCRATCH_MAX bytes, and one factor at a time on one lane beyond, where the rows are
# kept in segments small enough to fit (_segment_rows). The choice depends on the shapes only, so every
# chunk runs the same code.
_SCRATCH_MAX = 1 << 28  # 256 MiB per running thread
_LOCKSTEP = (_window_blocks, _grad_blocks, _unstage_rows, _stage, _runs, _ring_base, _forward_rows,
             _forward, _reverse_rows, _reverse_start, _reverse)
_window_blocks_x8, _grad_blocks_x8 = specialise(_LOCKSTEP, f"_x{_TB}", _TB=_TB, **simd(_TB))[:2]
_grad_blocks_x1 = specialise(_LOCKSTEP, "_x1", _TB=1, **simd(1))[1]


@jit
def _grad_wide(L, offs):
    """Whether the gradient runs blocks of _TB lanes (else one lane): while all their rows of Sigma fit
    the budget."""
    F, K, n = L.shape
    return n * _pitch(offs[K - 1] + 1) * _TB * 8 <= _SCRATCH_MAX


@jit
def _segment_rows(n, W, lanes):
    """Rows per segment k of the gradient's sweep on blocks of ``lanes`` (see _grad_blocks): m = 1
    segment (k = n, every row kept) while it fits _SCRATCH_MAX, else the fewest segments k = ceil(n / m)
    whose rows, (m - 1) w + min(k + w, n), fit it (each segment past the first costs its rows of the
    forward sweep again), else, where none fits, the m that keeps the fewest rows: about
    2 sqrt(n w) + w at m ~ sqrt(n / w), against n for k = n."""
    w = W - 1
    fit = _SCRATCH_MAX // (_pitch(W) * lanes * 8)
    best = n + 1
    k_best = n
    m = 1
    while (m - 1) * w < best:  # past that every m keeps more rows
        k = (n + m - 1) // m
        rows = (m - 1) * w + min(k + w, n)
        if rows <= fit:
            return k
        if rows < best:
            best = rows
            k_best = k
        if k == 1:
            break
        m += 1
    return k_best


@jit
def _chain(offs):
    return offs.shape[0] == 2 and offs[1] == 1


@jit(fastmath=_FMA, error_model="numpy")
def _flags(L, lo, hi, chk):
    """(count of diagonal entries <= 0, chk plus the diagonals' checksum) of factors lo .. hi-1."""
    bad = 0
    for f in range(lo, hi):
        bad += _nonpositive(L[f, 0])
        chk += _checksum(L[f, 0])
    return bad, chk


@jit(fastmath=_FMA, error_model="numpy")
def _sigma_factors(L, offs, out, lo, hi):
    """out[f] = diag(Sigma_f), out (F, n), or out[f, 0] = tr(Sigma_f), out (F, 1), for f in lo .. hi-1:
    one compiled kernel for both."""
    F, K, n = L.shape
    chk = 0.0
    if _chain(offs):
        buf = np.empty((3, n))
        diag = out.shape[1] > 1
        for f in range(lo, hi):
            if diag:
                chk += _diag_chain(L[f], buf, out[f])
            else:
                v = _diag_chain(L[f], buf, buf[2])
                out[f, 0] = v
                chk += v
    else:
        chk = _window_blocks_x8(L, offs, out, lo, hi)
    return _flags(L, lo, hi, chk)


@template(fastmath=_FMA, error_model="numpy")
def _grad_factors(L, offs, g, out, lo, hi):
    """out[lo:hi] = d(sum_i g_i Sigma_ii)/dL; g (F, n), or (F, 1): one g per factor, the trace. Compiled
    for blocks of _TB lanes and for one (_WIDE), so that a process compiles the one-lane sweep only when
    a band past the memory budget asks for it."""
    F, K, n = L.shape
    if _chain(offs):
        buf = np.empty((3, n))
        for f in range(lo, hi):
            _chain_grad(L[f], g[f], buf, out[f])
    elif _WIDE:
        _grad_blocks_x8(L, offs, g, out, lo, hi, n)
    else:
        _grad_blocks_x1(L, offs, g, out, lo, hi, _segment_rows(n, offs[K - 1] + 1, 1))
    chk = 0.0
    for f in range(lo, hi):
        for k in range(K):
            chk += _checksum(out[f, k])
    return _flags(L, lo, hi, chk)


# The lock-step blocks of _TB lanes (not the chain) do ~8x (forward) and ~2x (gradient) more of their
# work, F n K (w + 1), per second than the per-pair loops that _PARALLEL_MIN was set for; one lane is
# taken as on a par with them.
@jit
def _plan(L, offs, wide, speedup):
    """Factors, one at a time for the chain and on one lane, else in blocks of _TB (``speedup``: how much
    more of the counted work a blocked recursion does per second than the per-item loops)."""
    F, K, n = L.shape
    work = F * n * K * (offs[K - 1] + 1)
    if _chain(offs) or not wide:
        return F, 1, work, _PARALLEL_MIN
    return F, _TB, work // speedup, _PARALLEL_MIN


@jit
def _forward_plan(L, offs, out):
    return _plan(L, offs, True, 8)


@jit
def _wide_grad_plan(L, offs, g, out):
    return _plan(L, offs, True, 2)


@jit
def _narrow_grad_plan(L, offs, g, out):
    return _plan(L, offs, False, 2)


_sigma = driver(_forward_plan, _sigma_factors)
_sigma_grad_wide = driver(_wide_grad_plan, specialise((_grad_factors,), "_wide", _WIDE=True)[0])
_sigma_grad_narrow = driver(_narrow_grad_plan, specialise((_grad_factors,), "_narrow", _WIDE=False)[0])


def _sigma_grad(L, offs, g, out):
    return (_sigma_grad_wide if _grad_wide(L, offs) else _sigma_grad_narrow)(L, offs, g, out)


# The trace and the diagonal share their compiled kernels, and so do their gradients (the selected
# inversion is the longest compilation of gvae): the trace's arrays take a trailing axis of 1, as views.
@register("band_trace_inv")
def band_trace_inv(L, offs, out):
    """out[f] = tr((L_f L_f^T)^{-1}), exactly, in O(n K w) (O(n) for the chain), float64 inside;
    L (F, K, n), out (F,)."""
    return _sigma(L, offs, out.reshape(-1, 1))


@register("band_diag_inv")
def band_diag_inv(L, offs, out):
    """out[f, i] = ((L_f L_f^T)^{-1})_ii, the same recursion; out (F, n)."""
    return _sigma(L, offs, out)


@register("band_trace_inv_grad")
def band_trace_inv_grad(L, offs, g, out):
    """out[f] = g[f] d tr((L_f L_f^T)^{-1}) / d L_f on the band (= -2 g (Sigma^2 L) restricted), zero in
    the slots that do not exist; L, out (F, K, n), g (F,)."""
    return _sigma_grad(L, offs, g.reshape(-1, 1), out)


@register("band_diag_inv_grad")
def band_diag_inv_grad(L, offs, g, out):
    """out[f] = sum_i g[f, i] d ((L_f L_f^T)^{-1})_ii / d L_f on the band, zero in the slots that do not
    exist; L, out (F, K, n), g (F, n)."""
    return _sigma_grad(L, offs, g, out)
