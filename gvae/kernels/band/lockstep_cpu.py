"""The lock-step layout of the exact trace's selected inversion (:mod:`selected_inversion_cpu`): blocks of
_TB factors staged into flat float64 arrays, the ring of rows of Sigma the sweeps keep, the plan of the runs
on which they read it, and the record of a block's state that the sweeps share.

The general recursion is a serial chain per factor (each step needs the rows the previous ones wrote),
so it runs on blocks of _TB factors in lock-step, the block innermost in every array: each scalar
operation of the per-factor recursion becomes one operation on a block vector (<_TB x double>, two AVX2
registers), in float64 as before. LLVM does not vectorise the loops over a block by itself (it unrolls
such short loops first and then cannot prove that the scratch arrays do not alias), so the block vector
is an explicit type (:mod:`simd_cpu`), loaded from and stored to flat float64 arrays at element offsets
(no bounds checks; inspect_llvm shows <8 x double> throughout). The band values of a block are staged,
float64, in S (n, K, _TB): S[i, 0, b] = 1 / L_ii, S[i, k, b] = L_{i + o_k, i} (0 where i + o_k >= n) of
factor f0 + b, and the diagonal in D (n, _TB), by _TB x _TB transposes; lanes past the end of the batch
repeat its last factor and their results are dropped. The staging is O(n K) per factor against the
recursion's O(n K w).

The functions here but :func:`_pitch` are templates (:mod:`..cpu.specialise`), compiled with the sweeps
for _TB = 8 lanes and for 1: ``_TB`` and the vector language (``_vld``, ``_vst``, ...) are bound then.
"""
from collections import namedtuple

import numpy as np

from ..cpu.jit import jit
from ..cpu.numba_compat import tuple_setitem
from ..cpu.specialise import template


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
# row i. It is one field of a block's :data:`Lockstep` record.
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



# The state of one lock-step block that the sweeps share, as one record: a tuple costs nothing in Numba
# (its fields are passed as separate arguments were, and the sweeps read them into locals before their
# loops), where a jitclass would be a heap object reached through a pointer. S (n, K, _TB) and D (n, _TB)
# the staged factors, offs and n their band, runs the plan of :data:`Runs`; R the ring of Wr rows of Sigma;
# dg (n, _TB) the Sigma_ii that the forward sweep finds; for the reverse mode (empty for the forward sweep
# alone) the ring Rb of W rows of adjoints, gd (n + W, _TB) the adjoints of the diagonal and G (n, K, _TB)
# the gradient (see selected_inversion_cpu's _reverse).
Lockstep = namedtuple("Lockstep", ["S", "D", "offs", "n", "runs", "R", "Wr", "dg", "Rb", "gd", "G"])


@template(error_model="numpy", inline="always")
def _coefficients(nrl, S, pS, k0, nt):
    """-rl L_{m_k, i} for the nt (a literal) terms k = k0 .. k0 + nt - 1 of step i, from nrl = -rl and the
    values of L staged in S from pS on: a tuple of block vectors, kept in registers."""
    c = _repeat(nrl, nt)
    for j in range(nt):
        c = tuple_setitem(c, j, _vmul(nrl, _vld(S, pS + (k0 + j) * _TB)))
    return c


@template(error_model="numpy", inline="always")
def _run_strides(runs, p, k0, nt):
    """(first d, end d, the strides of the nt (a literal) terms k0 .. k0 + nt - 1) of run p of
    :data:`Runs`."""
    t = _repeat(0, nt)
    for j in range(nt):
        t = tuple_setitem(t, j, runs.stride[p, k0 + j])
    return runs.bounds[p], runs.bounds[p + 1], t
