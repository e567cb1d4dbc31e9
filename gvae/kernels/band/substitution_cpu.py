"""Numba CPU kernels: forward and backward substitution with a banded factor (L x = b, L^T x = b).

Both directions are compiled from one set of templates (:mod:`..cpu.specialise`) that read ``_TRANSPOSED``.
They walk the rows in solve order, t = 0 .. n-1 steps from the row where the solve starts: row
``_row(t, n)`` is t for L x = b (forwards from row 0) and n-1-t for L^T x = b (backwards from row n-1),
and the term of offset o in row t reads x at row ``_row(t - o, n)``, solved o steps earlier.
"""
import numpy as np

from ..backend import register
from ..cpu.entries import INT, Entry, array
from ..cpu.numba_compat import to_fixed_tuple
from ..cpu.specialise import template, variants
from .common_cpu import _FMA, _checksum, _nonpositive, _u
from .driver_cpu import driver, pair_plan


@template()
def _row(t, n):
    """The row solved t steps after the first."""
    return _u(n - 1 - t if _TRANSPOSED else t)


@template(fastmath=_FMA, error_model="numpy")
def _prep(Lf, offs, M):
    """M[0, i] = 1 / L_ii and M[k, i] = (term of offset o_k in row i) / L_ii: L_{i, i - o_k} / L_ii
    (i >= o_k) for L x = b, the rows of L; L_{i + o_k, i} / L_ii (i < n - o_k) for L^T x = b."""
    K, n = Lf.shape
    one = Lf.dtype.type(1.0)
    d = Lf[0]
    m0 = M[0]
    for i in range(n):
        m0[i] = one / d[i]
    for k in range(1, K):
        o = offs[k]
        r = 0 if _TRANSPOSED else o  # the first row with the term
        src = Lf[k, o:]
        dst = M[k, r:]
        m0r = m0[r:]
        for i in range(n - o):
            dst[i] = src[i] * m0r[i]


# Two formulations of each substitution, chosen per call by _use_blocks:
# - segments: the rows are split where the number of valid off-diagonal terms changes (at t = o_k), so
#   the loops over rows carry no edge test; each x_i gathers its terms, the offset-1 neighbour kept in
#   a register.
# - blocks: with q the first diagonal whose offset is >= 2 (q = 2 when offset 1 is present, else 1), a
#   block of length offs[q] only reads x outside itself through diagonals q..K-1; those terms are
#   gathered first for the whole block with vectorised loops (into x as scratch), then the offset-1
#   recursion runs through the block, one fused multiply-add per element. Best for the chain (one
#   block) and for long blocks; short blocks would run the vector loops' scalar remainders.
# Indices that LLVM cannot prove non-negative are cast to unsigned (Numba then skips wraparound).

def _use_blocks(offs, n):
    """Whether a band of offsets ``offs`` (an array) is solved on blocks of rows, else by segments."""
    K = offs.shape[0]
    q = 2 if K > 1 and offs[1] == 1 else 1
    return q >= K or offs[q] >= 64


@template(fastmath=_FMA, error_model="numpy")
def _solve_rows(M, offs, b, x, p, prev):
    """Segment p >= 1 when offset 1 is present: rows t = o_p .. o_{p+1}-1 (.. n-1 for the last), with the
    terms of diagonals 1 .. p, diagonal 1's neighbour in prev (returned updated). Called with p a
    literal and offs a tuple, LLVM unrolls the loop over the terms and keeps the offsets in registers
    (from an array it would load them again after every store to x)."""
    K, n = M.shape
    m0 = M[0]
    m1 = M[1]
    for t in range(offs[p], offs[p + 1] if p + 1 < K else n):
        i = _row(t, n)
        acc = m0[i] * b[i]
        for k in range(2, p + 1):
            acc -= M[k, i] * x[_row(t - offs[k], n)]
        prev = acc - m1[i] * prev
        x[i] = prev
    return prev


@template(fastmath=_FMA, error_model="numpy")
def _solve_seg(M, offs, b, x):
    K, n = M.shape
    m0 = M[0]
    if K > 1 and offs[1] == 1:
        i = _row(0, n)
        prev = m0[i] * b[i]
        x[i] = prev
        for p in range(1, K - 1):
            prev = _solve_rows(M, offs, b, x, p, prev)
        # the last segment holds most rows; with 3 to 5 diagonals (grid, extended grid) its count of
        # terms is a literal
        if K == 3:
            _solve_rows(M, to_fixed_tuple(offs, 3), b, x, 2, prev)
        elif K == 4:
            _solve_rows(M, to_fixed_tuple(offs, 4), b, x, 3, prev)
        elif K == 5:
            _solve_rows(M, to_fixed_tuple(offs, 5), b, x, 4, prev)
        else:
            _solve_rows(M, offs, b, x, K - 1, prev)
    else:
        for p in range(K):  # segment p: rows t = o_p .. o_{p+1}-1 with the terms of diagonals 1 .. p
            for t in range(offs[p], offs[p + 1] if p + 1 < K else n):
                i = _row(t, n)
                acc = m0[i] * b[i]
                for k in range(1, p + 1):
                    acc -= M[k, i] * x[_row(t - offs[k], n)]
                x[i] = acc


@template(fastmath=_FMA, error_model="numpy")
def _solve_blk(M, offs, b, x):
    K, n = M.shape
    chain = K > 1 and offs[1] == 1
    q = 2 if chain else 1
    blen = offs[q] if q < K else n
    m0 = M[0]
    for t0 in range(0, n, blen):
        t1 = min(t0 + blen, n)
        lo, hi = (n - t1, n - t0) if _TRANSPOSED else (t0, t1)  # the block's rows
        xb = x[lo:hi]
        m0b = m0[lo:hi]
        bb = b[lo:hi]
        for i in range(hi - lo):
            xb[i] = m0b[i] * bb[i]
        for k in range(q, K):
            o = offs[k]
            # rows [a, z) of the block with the term, which reads x at row i + s
            a, z, s = (lo, min(hi, n - o), o) if _TRANSPOSED else (max(lo, o), hi, -o)
            if z > a:
                xa = x[a:z]
                xk = x[a + s:z + s]
                Mk = M[k, a:z]
                for i in range(z - a):
                    xa[i] -= Mk[i] * xk[i]
        if chain:
            m1 = M[1]
            start = max(t0, 1)
            prev = x[_row(start - 1, n)]
            for t in range(start, t1):
                i = _row(t, n)
                prev = x[i] - m1[i] * prev
                x[i] = prev


@template(fastmath=_FMA, error_model="numpy")
def _solve_pairs(L, offs, b, out, lo, hi):
    """Solve the (factor, sample) pairs lo..hi-1 (factor-major), preparing each factor once:
    x_i = M[0, i] b_i - sum_{k >= 1} M[k, i] x_(row o_k steps earlier), M from _prep; on blocks of rows
    (_BLOCKS) or by segments."""
    F, K, n = L.shape
    S = b.shape[0]
    M = np.empty((K, n), dtype=L.dtype)
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
            _prep(L[f], offs, M)
            last = f
        x = out[s, f]
        if _BLOCKS:
            _solve_blk(M, offs, b[s, f], x)
        else:
            _solve_seg(M, offs, b[s, f], x)
        chk += _checksum(x)
    return bad, chk


def _direction(transposed):
    """The kernels (L, offs, b, out) -> (bad, checksum) solving L^T x = b if transposed, else L x = b: on
    blocks of rows (the chain, and bands whose first gap is wide) and by segments (the grids), each
    compiled only when a band of its kind asks for it (the segments' unrolled variants are most of the
    compiling); a chunk of pairs runs as a C entry."""
    templates = (_row, _prep, _solve_rows, _solve_seg, _solve_blk, _solve_pairs)
    return [driver(pair_plan, Entry(variants(templates, ("_t" if transposed else "_n") + suffix,
                                             _TRANSPOSED=transposed, _BLOCKS=blocks)[-1],
                                    results=2, L=array("F", "K", "n"), offs=array("K", dtype=np.int64),
                                    b=array("S", "F", "n"), out=array("S", "F", "n"), lo=INT, hi=INT))
            for suffix, blocks in (("_blk", True), ("_seg", False))]


def _solve(blocks, segments):
    """The solve (L, offs, b, out) -> (bad, checksum) that runs the kernel ``blocks`` or ``segments`` as
    the band asks (:func:`_use_blocks`)."""
    def solve(L, offs, b, out):
        return (blocks if _use_blocks(offs, L.shape[2]) else segments)(L, offs, b, out)
    return solve


_solve_t_blocks, _solve_t_segments = _direction(True)
_solve_n_blocks, _solve_n_segments = _direction(False)
# out[s, f] = L_f^{-T} b[s, f] and out[s, f] = L_f^{-1} b[s, f]; L (F, K, n); b, out (S, F, n).
register("band_solve_t")(_solve(_solve_t_blocks, _solve_t_segments))
register("band_solve")(_solve(_solve_n_blocks, _solve_n_segments))
