"""The CPU matrix product: NumPy's matmul, split by rows of the product over gvae's threads.

At the dense layers' shapes (M = 100-500 rows, K and N = 16-784) OpenBLAS's own threads scale poorly:
measured on a 2-core AVX-512 machine, 500 x 500 @ 500 x 784 ran at 93 GFLOP/s on one thread and 126 on
two, and 170-185 as two single-threaded calls on halves of the rows (the peers: PyTorch 163, XLA 190).
So the BLAS is held to one thread (:mod:`blas`); on gvae's threads, independent products given together
run one per thread, and a product of at least ``MIN_FLOPS`` given alone is cut into blocks of rows (of
columns for a wide product or a transposed b), each computed by NumPy's matmul on its own thread. Where
the BLAS's thread count cannot be set (not OpenBLAS, or no ``/proc/self/maps`` to find it), this is
NumPy's matmul on the BLAS's own threads, one product after the other.

A left factor that is mostly zeros (a binarised image batch: the first layer's product and its weight
gradient) is multiplied in compressed sparse rows instead (:mod:`sparse_rows_cpu`), on one thread or in
blocks of rows on gvae's threads.
"""
import numpy as np

from . import blas, threads
from .backend import register
from .sparse_rows_cpu import csr_product, sparse_rows

MIN_FLOPS = 4e7   # below this (~0.4 ms on one core), one call: a hand-over costs 20-60 us
MIN_ROWS = 16     # each block gets at least this many rows (columns)
MIN_SPARSE_WORK = 2.5e6  # nonzeros x columns below which a sparse product is one call (~0.2 ms)

def plan(a, b, split=True):
    """How out = a @ b is computed: (form, blocks, csr). ``form`` is "sparse rows" (a mostly-zero a, with
    b's rows contiguous: the compressed rows ``csr`` times b, in blocks of rows), "whole" (one NumPy
    matmul), or "rows" or "columns" (NumPy's matmul on blocks of the product's rows or columns);
    ``blocks`` the [(lo, hi)] ranges of rows or columns, one per task on gvae's threads. ``split``: the
    product may be cut into blocks (it is given alone, not one of as many products as threads)."""
    csr = sparse_rows(a) if b.strides[1] == b.itemsize else None
    if csr is not None:
        m = a.shape[0]
        parts = threads.blocks(m, MIN_ROWS) if split and csr[2].size * b.shape[1] >= MIN_SPARSE_WORK else [(0, m)]
        return "sparse rows", parts, csr
    m, n = a.shape[0], b.shape[1]
    if not split or 2.0 * m * n * a.shape[1] < MIN_FLOPS:
        return "whole", [(0, m)], None
    # Each block's BLAS call packs the whole of the factor the blocks share: b (K, N) for row blocks, a
    # (M, K) for column blocks. So a wide product (M < N: a batch of 100 rows into 500-784 units) is cut
    # into column blocks, a tall one into row blocks. Measured on the 2-core Zen 1 machine, 100 x 500 x 500
    # on two threads: 1.13-1.68 ms in row blocks, 0.76-1.20 in column blocks (three runs).
    # A column block of W.T is a row block of W: each task is one whole-row NT product, no copy (at
    # 100 x 784 x 500 on the AVX-512 machine: 0.60 ms in two column blocks, 0.67 in two row blocks, 1.15
    # with W.T copied first and row blocks, 1.01 on one thread).
    if m < n or not b.flags.c_contiguous:
        return "columns", threads.blocks(n, MIN_ROWS), None
    return "rows", threads.blocks(m, MIN_ROWS), None


def _tasks(a, b, out, split):
    """The tasks of :func:`plan`'s blocks, each writing its block of out."""
    form, parts, csr = plan(a, b, split)
    if form == "sparse rows":
        return [lambda lo=lo, hi=hi: csr_product(*csr, b, out, lo, hi) for lo, hi in parts]
    if form == "columns":
        return [lambda lo=lo, hi=hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]) for lo, hi in parts]
    if form == "whole":
        return [lambda: np.matmul(a, b, out=out)]
    return [lambda lo=lo, hi=hi: np.matmul(a[lo:hi], b, out=out[lo:hi]) for lo, hi in parts]


@register("matmul")
def matmul(products):
    """[(a, b, out or None)] -> [a @ b], each into its out (allocated when None)."""
    outs = [np.empty((a.shape[0], b.shape[1]), dtype=a.dtype) if out is None else out for a, b, out in products]
    # As many independent products as threads (a dense layer's two gradients): one thread each, whole.
    held = blas.settable()
    whole = not held or len(products) >= threads.get_threads()
    tasks = [task for (a, b, _), out in zip(products, outs) for task in _tasks(a, b, out, split=not whole)]
    if not held:  # the BLAS's own threads, for one product at a time
        for task in tasks:
            task()
        return outs
    # Each product on one BLAS thread (:mod:`blas`: no spinning BLAS workers between gvae's, and the
    # rounding of gvae's thread count, not of the process's BLAS setting).
    with blas.one_thread():
        threads.run(tasks)
    return outs
