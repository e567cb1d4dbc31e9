"""CPU kernel of :mod:`banded_lu`: LU factorisation with partial pivoting of general band matrices and the
solve with it, batched, in LAPACK's way (gbtrf/gbtrs: the row interchanges widen the upper band from u to
l + u, so the factor needs l more rows than the matrix).

A matrix of n rows with l sub- and u super-diagonals is in SciPy's banded storage, ``ab[u + i - j, j] =
a[i, j]`` (l + u + 1 rows). The factor is written into ``work`` (2 l + u + 1, n), ``work[l + u + i - j, j]``
holding U's entry (i <= j) or L's multiplier (i > j), with the pivot rows in ``piv``: one scratch of each for
a block of systems, reused system after system, so that it stays in the cache. The arithmetic is in the
arrays' dtype, as LAPACK's sgbsv and dgbsv."""
import numpy as np

from .backend import register
from .cpu import threads
from .cpu.entries import FLAG, INT, Entry, array, run_blocks
from .cpu.jit import jit


NOT_FINITE_AB, NOT_FINITE_B = -1, -2  # info's codes, with ``check``, for NaN or inf in a system's ab or b


@jit(error_model="numpy")
def _gbsv(ab, b, work, piv, info, lower, upper, check, lo, hi):
    """For each system f in [lo, hi): factor A_f (``ab[f]``, (l + u + 1, n)) into the scratch ``work``
    (2 l + u + 1, n) and ``piv`` (n,), then overwrite ``b[f]`` (n, k) with A_f^-1 b_f. ``info[f]`` is 0, or
    j + 1 for the first column j whose pivot is exactly zero (a singular matrix: ``b[f]`` is then left as it
    is); with ``check``, NOT_FINITE_AB or NOT_FINITE_B where ab[f] or b[f] holds NaN or inf (found as the
    copies go: a sum of v * 0 is NaN exactly then, and cannot overflow), the system left unsolved."""
    n, k = b.shape[1], b.shape[2]
    kv = lower + upper
    w, p = work, piv
    for f in range(lo, hi):
        x = b[f]
        for r in range(lower):
            for j in range(n):
                w[r, j] = 0.0
        scan = 0.0
        for r in range(kv + 1):
            for j in range(n):
                v = ab[f, r, j]
                w[lower + r, j] = v
                scan += v * 0.0
        info[f] = 0
        if check:
            if scan != scan:
                info[f] = NOT_FINITE_AB
                continue
            for j in range(n):
                for c in range(k):
                    scan += x[j, c] * 0.0
            if scan != scan:
                info[f] = NOT_FINITE_B
                continue
        last = 0  # the last column that an interchange so far has reached
        for j in range(n):
            below = min(lower, n - 1 - j)
            step, size = 0, abs(w[kv, j])
            for r in range(1, below + 1):
                if abs(w[kv + r, j]) > size:
                    step, size = r, abs(w[kv + r, j])
            p[j] = j + step
            if w[kv + step, j] == 0.0:
                if info[f] == 0:
                    info[f] = j + 1
                continue
            last = max(last, min(j + upper + step, n - 1))
            if step:
                for c in range(j, last + 1):
                    t = w[kv + j - c, c]
                    w[kv + j - c, c] = w[kv + j + step - c, c]
                    w[kv + j + step - c, c] = t
            if below:
                inverse = 1.0 / w[kv, j]
                for r in range(1, below + 1):
                    w[kv + r, j] *= inverse
                for c in range(j + 1, last + 1):
                    t = w[kv + j - c, c]
                    if t != 0.0:
                        for r in range(1, below + 1):
                            w[kv + j + r - c, c] -= w[kv + r, j] * t
        if info[f]:
            continue
        for j in range(n):  # x <- L^-1 P x, the interchanges applied as the factorisation made them
            q = p[j]
            if q != j:
                for c in range(k):
                    t = x[j, c]
                    x[j, c] = x[q, c]
                    x[q, c] = t
            for r in range(1, min(lower, n - 1 - j) + 1):
                m = w[kv + r, j]
                for c in range(k):
                    x[j + r, c] -= m * x[j, c]
        for j in range(n - 1, -1, -1):  # x <- U^-1 x, U of bandwidth l + u
            d = w[kv, j]
            for c in range(k):
                x[j, c] /= d
            for i in range(max(0, j - kv), j):
                m = w[kv + i - j, j]
                for c in range(k):
                    x[i, c] -= m * x[j, c]


_GBSV = Entry(_gbsv, ab=array("f", "r", "n"), b=array("f", "n", "k"), work=array("w", "n"),
              piv=array("n", dtype=np.int64), info=array("f", dtype=np.int64), lower=INT, upper=INT, check=FLAG,
              lo=INT, hi=INT)
_GBSV_SECONDS = 3e-9  # a column's elimination and solve per band entry, on one thread (measured order)


@register("banded_lu_solve")
def banded_lu_solve(ab, b, lower, upper, check):
    """Overwrites ``b`` (F, n, k) with A_f^-1 b_f for the F band matrices ``ab`` (F, l + u + 1, n), all
    C-contiguous of one float dtype; returns ``info`` (F,) int64 (:func:`_gbsv`'s)."""
    count, n = b.shape[0], b.shape[1]
    per_system = (lower + 1) * (lower + upper + 1 + b.shape[2]) * n
    parts = threads.row_blocks(count, per_system, _GBSV_SECONDS)
    work = np.empty((len(parts), 2 * lower + upper + 1, n), ab.dtype)  # a scratch per block
    piv = np.empty((len(parts), n), np.int64)
    info = np.empty(count, np.int64)
    run_blocks(_GBSV, lambda part, lo, hi: (ab, b, work[part], piv[part], info, lower, upper, bool(check), lo, hi),
               parts)
    return info
