"""The selected inversion of banded factors (Takahashi's recursion) on lock-step blocks of factors: the
forward sweep that finds the rows of Sigma = (L L^T)^{-1} inside the band's window, its reverse mode, and
the blocks that run them, compiled for _TB lanes and for one (the drivers: trace_cpu).

From L^T Sigma = L^{-1}, whose upper triangle is diag(1 / L_ii), for i = n-1 .. 0 and m_k = i + o_k:
  Sigma_{i, j} = -(1 / L_ii) sum_{k >= 1} L_{m_k, i} Sigma_{m_k, j}       for i < j <= i + w,
  Sigma_{i, i} =  (1 / L_ii) (1 / L_ii - sum_{k >= 1} L_{m_k, i} Sigma_{i, m_k}),
which only reads Sigma entries inside the window [i, i + w], w = o_{K-1}. The trace keeps the last w + 1
rows of the band of Sigma; the gradient stores the whole band (n, w+1) and runs the recursion backwards
in reverse mode, its adjoints in a window of w + 1 rows. Both run on blocks of _TB factors in lock-step,
laid out as :mod:`lockstep_cpu` describes. The functions here up to _grad_blocks are templates
(:mod:`..cpu.specialise`), compiled for _TB = 8 lanes and for 1 (see _LOCKSTEP below).
"""
import numpy as np

from ..cpu.jit import jit
from ..cpu.numba_compat import tuple_setitem
from ..cpu.specialise import template, variants
from .common_cpu import _FMA, _TB, _checksum
from .lockstep_cpu import (Lockstep, _coefficients, _pitch, _ring_base, _run_strides, _runs, _stage,
                           _unstage_rows)
from .simd_cpu import simd


# The four sweeps (_forward, _forward_rows, _reverse, _reverse_rows) take the block's state as one
# record (:data:`lockstep_cpu.Lockstep`), then where the rows of Sigma start in its ring, then the rows
# lo .. hi - 1 (the forward ones taken from hi - 1 down).
#
# Step i's sums over its terms k = 1 .. kmax (kmax = K - 1 but in the last w rows) run in passes over d,
# each over nt consecutive terms with nt a literal, so that LLVM unrolls the loop over them and keeps
# their coefficients and addresses in registers (tuples). With 3 to 5 diagonals (grid, extended grid)
# the rows that have all their terms take one pass, kmax and nt literals; every other row takes one
# pass per term. The forward sweep and its reverse mode walk the same runs of d with different bodies:
# a shared loop would need the body passed as a jitted function, which Numba's cache cannot hold, and
# a helper called per row pays Numba's reference counting of its array arguments at every call (the
# helpers they share, _coefficients and _run_strides, are inlined into them by Numba).

@template(error_model="numpy")
def _forward_rows(block, base, lo, hi, kmax, nt):
    """Steps i = hi-1 .. lo of _forward, rows with the terms k = 1 .. kmax (kmax = -1: each row its
    own), in passes of nt terms; Sigma_ii also into the block's dg."""
    S, offs, n, runs, R, Wr, dg = block.S, block.offs, block.n, block.runs, block.R, block.Wr, block.dg
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
            c = _coefficients(nrl, S, pS, k0, nt)  # c_k = -rl L_{m_k, i}
            for p in range(runs.count):
                dlo, dhi, t = _run_strides(runs, p, k0, nt)
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
def _forward(block, base, lo, hi):
    """Rows of Sigma for i = hi-1 .. lo (selected inversion; rows hi .. hi + w - 1 already in the ring)
    into the block's ring R of Wr rows, row i in slot (i - base) mod Wr; its dg (n, _TB), flat:
    dg[i, b] = Sigma_ii of lane b."""
    offs, n = block.offs, block.n
    K = offs.shape[0]
    full = n - offs[K - 1] if 3 <= K <= 5 else 0  # rows i < full: all terms, one pass
    t = max(lo, min(hi, full))
    _forward_rows(block, base, t, hi, -1, 1)
    if K == 3:
        _forward_rows(block, base, lo, t, 2, 2)
    elif K == 4:
        _forward_rows(block, base, lo, t, 3, 3)
    elif K == 5:
        _forward_rows(block, base, lo, t, 4, 4)



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
        none = np.empty(0)  # no reverse mode
        block = Lockstep(S, D, offs, n, _runs(offs), R, W, dg, none, none, none)
        tr = np.empty(_TB)
        diag = out.shape[1] > 1
        # A typed zero, not the literal 0: Numba compiles a function called with a literal for that value,
        # so _forward was compiled a second time beside _grad_blocks's.
        start = np.int64(0)
        for f0 in range(lo, hi, _TB):
            nf = min(_TB, hi - f0)
            _stage(L, offs, f0, S, D)
            _forward(block, start, start, n)
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
def _reverse_rows(block, r0, lo, hi, kmax, nt):
    """Steps i = lo .. hi-1 of _reverse, rows with the terms k = 1 .. kmax (kmax = -1: each row its
    own), in passes of nt terms as in _forward_rows."""
    S, D, offs, n, runs, R = block.S, block.D, block.offs, block.n, block.runs, block.R
    Rb, gd, G = block.Rb, block.gd, block.G
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
            e = _coefficients(nrl, S, pS, k0, nt)  # -rl c_k
            a = _repeat(zero, nt)
            for p in range(runs.count):
                dlo, dhi, t = _run_strides(runs, p, k0, nt)
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
def _reverse_start(block):
    """The block's adjoint ring Rb before step 0 of _reverse: rows 0 .. w, g_i (from gd) on their
    diagonals."""
    offs, Rb, gd = block.offs, block.Rb, block.gd
    K = offs.shape[0]
    W = offs[K - 1] + 1
    WT = _pitch(W) * _TB
    zero = _vsplat(0.0)
    for q in range(0, W * WT, _TB):
        _vst(Rb, q, zero)
    for r in range(W):
        _vst(Rb, r * WT, _vld(gd, r * _TB))


@template(error_model="numpy")
def _reverse(block, r0, lo, hi):
    """Steps i = lo .. hi-1 of the reverse mode through the recursion of _forward, in order from 0 (see
    _reverse_start) to n-1: step i reads rows i .. i + w of Sigma, row r in the block's R at row r - r0.
    The adjoints of the same entries (g_i on the diagonal Sigma_ii, from gd (n + W, _TB), flat, its rows
    from n on zero) live in the ring Rb of W rows, row i final at step i, its slot then reset for row
    i + W. G (n, K, _TB), flat: G[i, k] = d(sum_j g_j Sigma_jj)/dL_{i, i-o_k} (the entries i < o_k are
    left alone)."""
    offs, n = block.offs, block.n
    K = offs.shape[0]
    full = n - offs[K - 1] if 3 <= K <= 5 else 0  # rows i < full: all terms, one pass
    t = max(lo, min(hi, full))
    if K == 3:
        _reverse_rows(block, r0, lo, t, 2, 2)
    elif K == 4:
        _reverse_rows(block, r0, lo, t, 3, 3)
    elif K == 5:
        _reverse_rows(block, r0, lo, t, 4, 4)
    _reverse_rows(block, r0, t, hi, -1, 1)



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
        dg = np.empty(n * _TB)
        gd = np.zeros((n + W) * _TB)  # rows from n on stay zero: adjoints of rows past the end
        block = Lockstep(S, D, offs, n, _runs(offs), R, rows, dg, Rb, gd, G)
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
                _forward(block, b, b, e)
                if j > 0:
                    start = (j - 1) * w * WT
                    for q in range(min(w, n - b) * WT):  # (loops, not slices assigned: see sparse_rows_cpu)
                        CP[start + q] = R[q]
            # Reverse, segments 0 .. m-1, each but the first (still in R) recomputed from the start of
            # the one above, kept in CP: the forward sweep twice (less segment 0), always in the same
            # operations, so the result does not depend on ks.
            _reverse_start(block)
            for j in range(m):
                b = j * ks
                e = min(b + ks, n)
                if j > 0:
                    c = min(w, n - e) * WT
                    for q in range(c):
                        R[ks * WT + q] = CP[j * w * WT + q]
                    _forward(block, b, b, e)
                _reverse(block, b, b, e)
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
_LOCKSTEP = (_window_blocks, _grad_blocks, _unstage_rows, _stage, _runs, _ring_base, _coefficients, _run_strides,
             _forward_rows, _forward, _reverse_rows, _reverse_start, _reverse)
_window_blocks_x8, _grad_blocks_x8 = variants(_LOCKSTEP, f"_x{_TB}", _TB=_TB, **simd(_TB))[:2]
_grad_blocks_x1 = variants(_LOCKSTEP, "_x1", _TB=1, **simd(1))[1]


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

