"""Numba CPU kernels for a product whose left factor is mostly zeros: its compressed sparse rows (CSR)
and the product of them with a dense matrix.

A binarised MNIST batch is 13% ones, so the encoder's first layer, x (100, 784) @ W (784, 500), and its
weight gradient x^T (784, 100) @ g (100, 500) need 13% of a dense product's multiply-adds. Adding up the
rows of W (of g) that the nonzeros pick is then faster than the BLAS. Measured on a quiet 2-core AVX-512
machine through kernels.matmul, the CSR form included (0.055 ms; 0.087 for x^T, transposed from x's),
``python examples/bench_sparse_rows.py``: on one thread 0.33 and 0.38 ms against the BLAS's 0.80 for
either product; on two, 0.30 and 0.40 against 0.51 and 0.48 (the form is built on one thread). The
sparse product's time grows with the nonzeros, the BLAS's does not: on one thread they break even near
35% nonzeros; MAX_DENSITY stays well below that. Zeros of the left factor are skipped, so 0 * inf and 0 * nan add nothing here (as in
scipy.sparse), where the dense product gives nan.
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
def _rows_form(a, limit):
    """CSR (indptr, indices, values) of a C-ordered (M, K) ``a`` in one pass, or three empty arrays as soon
    as it has more than ``limit`` nonzeros."""
    m, k = a.shape
    indptr = np.empty(m + 1, dtype=np.int32)
    indices = np.empty(limit, dtype=np.int32)
    values = np.empty(limit, dtype=a.dtype)
    p = 0
    indptr[0] = 0
    for i in range(m):
        for j in range(k):
            if a[i, j] != 0:
                if p == limit:
                    return indptr[:0], indices[:0], values[:0]
                indices[p] = j
                values[p] = a[i, j]
                p += 1
        indptr[i + 1] = p
    return indptr, indices[:p], values[:p]


@jit
def _transposed_form(indptr, indices, values, columns):
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
def csr_product(indptr, indices, values, b, out, lo, hi):
    """out[lo:hi] <- A[lo:hi] @ b for A in CSR form, b (K, N) with C-ordered rows, out (M, N).

    Four picked rows of b are added per pass over the output row: one load and store of it per four
    multiply-adds (0.26 ms against 0.37 one at a time, for the 100 x 784 @ 784 x 500 of a binarised batch)."""
    n = b.shape[1]
    for i in range(lo, hi):
        row = out[i]
        for j in range(n):
            row[j] = 0
        p, end = indptr[i], indptr[i + 1]
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


def sparse_rows(a, max_density=MAX_DENSITY):
    """(indptr, indices, values): the CSR form of the 2-D ``a`` (C- or Fortran-ordered: a transposed C
    array), or None when more than ``max_density`` of its entries are nonzero or it is laid out otherwise.
    One pass over ``a`` in its memory order, given up as soon as it passes the limit; a dense ``a`` (a
    layer's activations) is told by its first rows, at twice the limit, before any allocation."""
    if a.flags.c_contiguous:
        base = a
    elif a.flags.f_contiguous:
        base = a.T
    else:
        return None
    probe = base[:PROBE_ROWS]
    if _nonzeros(probe) > 2 * max_density * probe.size:
        return None
    form = _rows_form(base, int(max_density * a.size))
    if base is not a and form[0].size:
        form = _transposed_form(*form, a.shape[0])
    return form if form[0].size else None
