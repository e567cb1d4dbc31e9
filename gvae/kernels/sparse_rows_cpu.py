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
def _csr(a, capacity):
    """CSR (indptr, indices, values) of the 2-D ``a`` with at most ``capacity`` nonzeros (the count of the
    whole factor it is a block of: no second pass to count the block's own), each row's entries in
    increasing column order. Branch-free: every entry is written to the next free slot, which only a
    nonzero keeps (the branch on each entry of a binarised image mispredicts: 91 us against 63 for
    100 x 784 on the Zen 4 machine). Called on a C-ordered array (a block of rows): on a strided one (a
    block of columns) it is slower."""
    m, k = a.shape
    indptr = np.empty(m + 1, dtype=np.int32)
    indices = np.empty(capacity + 1, dtype=np.int32)  # + 1: the slot of the zeros after the last nonzero
    values = np.empty(capacity + 1, dtype=a.dtype)
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
    return indptr, indices[:p], values[:p]


@jit
def _transposed(indptr, indices, values, columns):
    """CSR of A.T from the CSR of A (with ``columns`` columns): a counting sort of the nonzeros by column,
    each row's entries in increasing order."""
    t_indptr = np.zeros(columns + 1, dtype=np.int32)
    for p in range(indices.shape[0]):
        t_indptr[indices[p] + 1] += 1
    for c in range(columns):
        t_indptr[c + 1] += t_indptr[c]
    fill = t_indptr[:columns].copy()
    t_indices = np.empty_like(indices)
    t_values = np.empty_like(values)
    for i in range(indptr.shape[0] - 1):
        for p in range(indptr[i], indptr[i + 1]):
            c = indices[p]
            t_indices[fill[c]] = i
            t_values[fill[c]] = values[p]
            fill[c] += 1
    return t_indptr, t_indices, t_values


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


def block_form(a, transposed, nonzeros, lo, hi):
    """CSR of the rows lo..hi-1 of A = a.T if ``transposed`` else a, for the C-ordered 2-D ``a`` of
    ``nonzeros`` nonzero entries (:func:`sparse_factor`'s answer): a block of a's rows directly; a block
    of a's columns in compressed rows, then transposed (a scatter straight into the columns' slots took
    232 us for 100 x 784, this 92)."""
    if transposed:
        return _transposed(*_csr(a[:, lo:hi], nonzeros), hi - lo)
    return _csr(a[lo:hi], nonzeros)


def sparse_product(a, transposed, nonzeros, b, out, lo, hi):
    """out[lo:hi] <- A[lo:hi] @ b, A = a.T if ``transposed`` else a, for the C-ordered mostly-zero ``a``
    of ``nonzeros`` nonzero entries and b (K, N) with C-ordered rows: the block's CSR is built on the
    thread that multiplies it."""
    _csr_times(*block_form(a, transposed, nonzeros, lo, hi), b, out, lo)


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
