"""Numba CPU kernels for a product whose left factor is mostly zeros: compressed sparse rows (CSR) of a
block of it, built and multiplied with a dense matrix by the thread that computes the block.

A binarised MNIST batch is 13% ones, so the encoder's first layer, x (100, 784) @ W (784, 500), and its
weight gradient x^T (784, 100) @ g (100, 500) need 13% of a dense product's multiply-adds. Adding up the
rows of W (of g) that the nonzeros pick is then faster than the BLAS. Measured on a quiet 2-core AVX-512
machine through kernels.matmul, ``python examples/bench_sparse_rows.py``: on one thread 0.33 and 0.38 ms
against the BLAS's 0.80 for either product. The sparse product's time grows with the nonzeros, the BLAS's
does not: on one thread they break even near 35% nonzeros; MAX_DENSITY stays well below that.

Each thread builds the compressed form of its own block (x's rows, or x's columns for x^T), so the form
is built in parallel too: on the 2-core Zen 4 machine, two threads, the form included, 0.20-0.22 ms for
x @ W and 0.24-0.25 for x^T @ g (0.26-0.29 while each block counted its own nonzeros again, a strided
pass over x's columns), against 0.25-0.26 and 0.30-0.31 with the whole form built first on the caller's
thread (branching on each entry) and then split. Zeros of the left factor are skipped, so
0 * inf and 0 * nan add nothing here (as in scipy.sparse), where the dense product gives nan.
"""
import numpy as np

from .jit import jit
from .native_cpu import Call, array_at, usable

MAX_DENSITY = 0.2
PROBE_ROWS = 8  # of the array in memory order: a dense one is told from them


@jit
def _nonzeros(a):
    """The number of nonzero entries of the 2-D ``a`` (np.count_nonzero took 8 us for 8 x 500 float32,
    this 0.5 us: it is asked before every product)."""
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
    image mispredicts: 91 us against 63 for 100 x 784 on the Zen 4 machine). Called on a C-ordered array
    (a block of rows): on a strided one (a block of columns) it is slower."""
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
    fill[:] = t_indptr[:columns]
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
    multiply-adds (0.26 ms against 0.37 one at a time, for the 100 x 784 @ 784 x 500 of a binarised batch)."""
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
    columns in compressed rows, then transposed (a scatter straight into the columns' slots took 232 us
    for 100 x 784, this 92)."""
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


@jit(error_model="numpy")
def _block_at(args, dtype):
    """The kernel of the C entry (native_cpu) of :func:`_block_product`: args = (itemsize; transposed; a's
    address, rows, columns; b's address, rows, columns; out's address, rows; lo, hi; the int32 scratch's
    address and size; the real scratch's address and size), every array C-ordered (as the caller's thread's
    are: the same compiled loops)."""
    n = args[7]
    _block_product(array_at(args[2], (args[3], args[4]), dtype), args[1] != 0, array_at(args[5], (args[6], n), dtype),
                   array_at(args[8], (args[9], n), dtype), args[10], args[11], array_at(args[12], args[13], np.int32),
                   array_at(args[14], args[15], dtype))


def sparse_task(a, transposed, nonzeros, b, out, lo, hi):
    """The task (:func:`threads.run`) of out[lo:hi] <- A[lo:hi] @ b, A = a.T if ``transposed`` else a, for
    the C-ordered mostly-zero ``a`` of ``nonzeros`` nonzero entries (:func:`sparse_factor`'s answer), b
    (K, N) with C-ordered rows and out C-ordered rows: the block's CSR is built by the thread that
    multiplies it, a worker's through a C entry (:mod:`native_cpu`), without the GIL, where b and out are
    :func:`~native_cpu.usable` by address (else in its Python)."""
    ints, reals = _scratch(a, transposed, nonzeros, lo, hi)

    def run():
        _block_product(a, transposed, b, out, lo, hi, ints, reals)
    if not usable(a, b, out, ints, reals):  # (a block of a larger b: a worker runs it in Python)
        return run
    return Call(run, _block_at, lambda: (a.itemsize, int(transposed), a.ctypes.data, *a.shape, b.ctypes.data,
                                         *b.shape, out.ctypes.data, out.shape[0], lo, hi, ints.ctypes.data,
                                         ints.size, reals.ctypes.data, reals.size))


def sparse_factor(a, max_density=MAX_DENSITY):
    """(base, transposed, nonzeros) for a 2-D ``a`` with at most ``max_density`` of its entries nonzero:
    ``base`` the C-ordered array in memory (a itself, or a.T for a Fortran-ordered a: x.T in a weight
    gradient), ``transposed`` whether a is base.T, ``nonzeros`` their count. None for a denser ``a`` or
    one laid out otherwise. A dense ``a`` (a layer's activations) is told by its first rows, at twice the
    limit, before the whole is counted."""
    if a.flags.c_contiguous:
        base = a
    elif a.flags.f_contiguous:
        base = a.T
    else:
        return None
    probe = base[:PROBE_ROWS]
    if _nonzeros(probe) > 2 * max_density * probe.size:
        return None
    nonzeros = _nonzeros(base)
    return (base, base is not a, nonzeros) if nonzeros <= max_density * a.size else None
