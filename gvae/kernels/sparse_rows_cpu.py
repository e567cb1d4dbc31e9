"""Numba CPU kernels for a product whose left factor is mostly zeros: compressed sparse rows (CSR) of a
block of it, built and multiplied with a dense matrix by the thread that computes the block.

A binarised MNIST batch is 13% ones, so the encoder's first layer, x (100, 784) @ W (784, 500), and its
weight gradient x^T (784, 100) @ g (100, 500) need 13% of a dense product's multiply-adds. Adding up the
rows of W (of g) that the nonzeros pick is then faster than the BLAS (``python
benchmarks/bench_sparse_rows.py`` measures both through kernels.matmul). The sparse product's time grows
with the nonzeros, the BLAS's does not: on one thread they break even near 35% nonzeros; MAX_DENSITY
stays well below that.

Each thread builds the compressed form of its own block (x's rows, or x's columns for x^T), so the form
is built in parallel too, faster than the whole form built first on the caller's thread (branching on
each entry) and then split, or than each block counting its own nonzeros again (a strided pass over x's
columns). Zeros of the left factor are skipped, so 0 * inf and 0 * nan add nothing here (as in
scipy.sparse), where the dense product gives nan.
"""
import numpy as np

from .cpu import programs
from .cpu.entries import FLAG, FLOAT, INT, Call, Entry, array
from .cpu.jit import jit

MAX_DENSITY = 0.2
PROBE_ROWS = 8  # of the array in memory order: a dense one is told from them


@jit
def _nonzeros(a):
    """The number of nonzero entries of the 2-D ``a`` (faster than np.count_nonzero on a few rows: it is
    asked before every product)."""
    count = 0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            count += a[i, j] != 0
    return count


@jit
def _csr(a, indptr, indices, values):
    """CSR (indptr, indices, values) of the 2-D ``a``, written into the given arrays (indptr of a's rows + 1
    entries, indices and values of one more than a's nonzeros: the count of the whole factor it is a block
    of, so no second pass counts the block's own); returns the count p, the form being (indptr,
    indices[:p], values[:p]), each row's entries in increasing column order. Branch-free: every entry is
    written to the next free slot, which only a nonzero keeps (the branch on each entry of a binarised
    image mispredicts, and is slower). Called on a C-ordered array (a block of rows): on a strided one (a
    block of columns) it is slower."""
    m, k = a.shape
    p = 0
    indptr[0] = 0
    for i in range(m):
        row = a[i]
        for j in range(k):
            v = row[j]
            indices[p] = j
            values[p] = v
            p += v != 0
        indptr[i + 1] = p
    return p


@jit
def _transposed(indptr, indices, values, t_indptr, fill, t_indices, t_values):
    """CSR of A.T, written into (t_indptr (A's columns + 1), t_indices, t_values) with ``fill`` (A's
    columns) as scratch, from the CSR of A: a counting sort of the nonzeros by column, each row's entries
    in increasing order."""
    columns = fill.shape[0]
    t_indptr[:] = 0
    for p in range(indices.shape[0]):
        t_indptr[indices[p] + 1] += 1
    for c in range(columns):
        t_indptr[c + 1] += t_indptr[c]
    # A loop: an array assigned to a slice compiles Numba's check of their shapes, whose error message's
    # formatting is slow to compile (tests/test_kernel_source.py).
    for c in range(columns):
        fill[c] = t_indptr[c]
    for i in range(indptr.shape[0] - 1):
        for p in range(indptr[i], indptr[i + 1]):
            c = indices[p]
            t_indices[fill[c]] = i
            t_values[fill[c]] = values[p]
            fill[c] += 1


@jit
def _csr_times(indptr, indices, values, b, out, row0):
    """out[row0 + r] <- row r of the CSR matrix (indptr, indices, values) @ b, b (K, N) with C-ordered rows.

    Four picked rows of b are added per pass over the output row: one load and store of it per four
    multiply-adds (faster than one at a time)."""
    n = b.shape[1]
    for r in range(indptr.shape[0] - 1):
        row = out[row0 + r]
        for j in range(n):
            row[j] = 0
        p, end = indptr[r], indptr[r + 1]
        while p + 4 <= end:
            b0, b1, b2, b3 = b[indices[p]], b[indices[p + 1]], b[indices[p + 2]], b[indices[p + 3]]
            v0, v1, v2, v3 = values[p], values[p + 1], values[p + 2], values[p + 3]
            for j in range(n):
                row[j] += (v0 * b0[j] + v1 * b1[j]) + (v2 * b2[j] + v3 * b3[j])
            p += 4
        for q in range(p, end):
            v = values[q]
            picked = b[indices[q]]
            for j in range(n):
                row[j] += v * picked[j]


@jit
def _form_into(a, transposed, lo, hi, ints, reals):
    """The CSR of the rows lo..hi-1 of A = a.T if ``transposed`` else a, in the scratch ``ints`` (int32)
    and ``reals`` (a's dtype) that :func:`_scratch` sized: a block of a's rows directly; a block of a's
    columns in compressed rows, then transposed (faster than a scatter straight into the columns'
    slots)."""
    block = a[:, lo:hi] if transposed else a[lo:hi]
    rows, capacity = block.shape[0], reals.shape[0] // (2 if transposed else 1)
    indptr, indices, values = ints[:rows + 1], ints[rows + 1:rows + 1 + capacity], reals[:capacity]
    p = _csr(block, indptr, indices, values)
    if not transposed:
        return indptr, indices[:p], values[:p]
    columns = hi - lo
    rest = ints[rows + 1 + capacity:]
    t_indptr, fill, t_indices = rest[:columns + 1], rest[columns + 1:2 * columns + 1], rest[2 * columns + 1:]
    t_values = reals[capacity:]
    _transposed(indptr, indices[:p], values[:p], t_indptr, fill, t_indices[:p], t_values[:p])
    return t_indptr, t_indices[:p], t_values[:p]


def _scratch(a, transposed, nonzeros, lo, hi):
    """The (int32, a's dtype) scratch arrays of :func:`_form_into` for the block lo..hi-1."""
    capacity = nonzeros + 1  # + 1: the slot of the zeros after the last nonzero
    rows = a.shape[0] if transposed else hi - lo
    ints = rows + 1 + capacity + ((hi - lo + 1) + (hi - lo) + capacity if transposed else 0)
    return np.empty(ints, np.int32), np.empty(capacity * (2 if transposed else 1), a.dtype)


def block_form(a, transposed, nonzeros, lo, hi):
    """CSR (indptr, indices, values) of the rows lo..hi-1 of A = a.T if ``transposed`` else a, for the
    C-ordered 2-D ``a`` of ``nonzeros`` nonzero entries (:func:`sparse_factor`'s answer)."""
    return _form_into(a, transposed, lo, hi, *_scratch(a, transposed, nonzeros, lo, hi))


@jit
def _block_product(a, transposed, b, out, lo, hi, ints, reals):
    """out[lo:hi] <- A[lo:hi] @ b through the block's CSR, built in the scratch (:func:`_form_into`)."""
    _csr_times(*_form_into(a, transposed, lo, hi, ints, reals), b, out, lo)


_BLOCK_PRODUCT = Entry(_block_product, a=array("m", "k"), transposed=FLAG, b=array("kb", "n"),
                       out=array("rows", "n"), lo=INT, hi=INT, ints=array("ni", dtype=np.int32),
                       reals=array("nr"))


def sparse_task(a, transposed, nonzeros, b, out, lo, hi):
    """The task (:func:`.cpu.threads.run`) of out[lo:hi] <- A[lo:hi] @ b, A = a.T if ``transposed`` else a,
    for the C-ordered mostly-zero ``a`` of ``nonzeros`` nonzero entries (:func:`sparse_factor`'s answer),
    b (K, N) with C-ordered rows and out C-ordered rows: the block's CSR is built by the thread that
    multiplies it, a worker's through a C entry (:mod:`.cpu.entries`), without the GIL, where b and out
    are C-contiguous (else in its Python: a block of a larger b). While a program is recorded
    (:mod:`.cpu.programs`) the scratch has room for a factor with no zeros, so that the task stays valid
    for any data written into ``a`` later; otherwise it holds this factor's nonzeros only, and the task
    is not replayable."""
    recorded = programs.recording_open()
    ints, reals = _scratch(a, transposed, a.size if recorded else nonzeros, lo, hi)
    return Call(_BLOCK_PRODUCT, (a, transposed, b, out, lo, hi, ints, reals), replayable=recorded)


def sparse_factor(a, max_density=MAX_DENSITY):
    """(base, transposed, nonzeros) for a 2-D ``a`` with at most ``max_density`` of its entries nonzero:
    ``base`` the C-ordered array in memory (a itself, or a.T for a Fortran-ordered a: x.T in a weight
    gradient), ``transposed`` whether a is base.T, ``nonzeros`` their count. None for a denser ``a`` or
    one laid out otherwise. A dense ``a`` (a layer's activations) is told by its first rows, at twice the
    limit, before the whole is counted."""
    base = _base(a)
    if base is None:
        return None
    nonzeros = _sparse_count(base, max_density)
    return (base, base is not a, nonzeros) if nonzeros >= 0 else None


def _base(a):
    """The C-ordered array in memory behind the 2-D ``a`` (a, or a.T), or None."""
    if a.flags.c_contiguous:
        return a
    if a.flags.f_contiguous:
        return a.T
    return None


@jit
def _sparse_count(base, max_density):
    """The nonzeros of the C-ordered 2-D ``base`` where at most ``max_density`` of its entries are nonzero,
    else -1; a dense ``base`` (a layer's activations) told by its first rows, at twice the limit, before
    the whole is counted."""
    probe = base[:PROBE_ROWS]
    if _nonzeros(probe) > 2 * max_density * probe.size:
        return -1
    nonzeros = _nonzeros(base)
    return nonzeros if nonzeros <= max_density * base.size else -1


@jit
def _check(base, max_density, sparse, flags):
    """flags[0] <- 1 where ``base`` would not be taken as sparse as ``sparse`` says (:func:`sparse_factor`)."""
    if (_sparse_count(base, max_density) >= 0) != sparse:
        flags[0] = 1.0


_CHECK = Entry(_check, base=array("m", "k"), max_density=FLOAT, sparse=FLAG, flags=array("one", dtype=np.float64))


def decision_check(a, sparse, flags, max_density=MAX_DENSITY):
    """The native task that sets flags[0] to 1 where :func:`sparse_factor` of ``a`` (with the data it will
    hold) would not be ``sparse`` (a recorded program's check, :func:`.cpu.programs.check`); None where
    a's layout alone decides (no C-ordered array behind it: never sparse)."""
    base = _base(a)
    return None if base is None else Call(_CHECK, (base, max_density, sparse, flags))
