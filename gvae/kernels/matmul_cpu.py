"""The CPU matrix product: NumPy's matmul, split by rows of the product over gvae's threads.

At the dense layers' shapes (M = 100-500 rows, K and N = 16-784) OpenBLAS's own threads scale poorly:
measured on a 2-core AVX-512 machine, 500 x 500 @ 500 x 784 ran at 93 GFLOP/s on one thread and 126 on
two, and 170-185 as two single-threaded calls on halves of the rows (the peers: PyTorch 163, XLA 190).
So the BLAS is held to one thread (:mod:`blas`); on gvae's threads, independent products given together
run one per thread, and a product of at least ``MIN_FLOPS`` given alone is cut into blocks of rows (of
columns for a wide product or a transposed b), each computed by NumPy's matmul on its own thread. Where
the BLAS's thread count cannot be set (not OpenBLAS, or no ``/proc/self/maps`` to find it), this is
NumPy's matmul on the BLAS's own threads, one product after the other. A block that a worker computes
is one ``cblas_?gemm`` call made from the worker's native loop (:mod:`worker_cpu`), the caller's block
NumPy's matmul.

A left factor that is mostly zeros (a binarised image batch: the first layer's product and its weight
gradient) is multiplied in compressed sparse rows instead (:mod:`sparse_rows_cpu`), on one thread or in
blocks of rows on gvae's threads.
"""
import numpy as np

from . import blas, threads, worker_cpu
from .backend import register
from .sparse_rows_cpu import sparse_factor, sparse_product

MIN_FLOPS = 4e7   # below this (~0.4 ms on one core), one call: a hand-over costs 20-60 us
MIN_ROWS = 16     # each block gets at least this many rows (columns)
MIN_SPARSE_WORK = 2.5e6  # nonzeros x columns below which a sparse product is one call (~0.2 ms)

def plan(a, b, split=True):
    """How out = a @ b is computed: (form, blocks, sparse). ``form`` is "sparse rows" (a mostly-zero a, with
    b's rows contiguous: each block of rows in compressed form times b; ``sparse`` is
    :func:`sparse_factor`'s answer), "whole" (one NumPy matmul), or "rows" or "columns" (NumPy's matmul
    on blocks of the product's rows or columns); ``blocks`` the [(lo, hi)] ranges of rows or columns, one
    per task on gvae's threads. ``split``: the product may be cut into blocks (it is given alone, not one
    of as many products as threads)."""
    sparse = sparse_factor(a) if b.strides[1] == b.itemsize else None
    if sparse is not None:
        m = a.shape[0]
        parts = threads.blocks(m, MIN_ROWS) if split and sparse[2] * b.shape[1] >= MIN_SPARSE_WORK else [(0, m)]
        return "sparse rows", parts, sparse
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


_NO_TRANS, _TRANS = 111, 112  # CBLAS_TRANSPOSE


def _layout(x):
    """(transpose flag, leading dimension) of the 2-D ``x`` as a row-major BLAS operand, or None (the
    test of NumPy's matmul: one unit stride, the other a multiple of the item size spanning a row)."""
    (rows, cols), (s0, s1), size = x.shape, x.strides, x.itemsize
    if s1 == size and s0 % size == 0 and s0 >= cols * size:
        return _NO_TRANS, s0 // size
    if s0 == size and s1 % size == 0 and s1 >= rows * size:
        return _TRANS, s1 // size
    return None


class _Product:
    """out = a @ b, a task of :func:`threads.run`: NumPy's matmul when called, and for a worker the same
    product as one BLAS call (``native``: the worker_cpu kind and the cblas arguments; None where the BLAS
    cannot take it as it is, and the worker calls NumPy's matmul instead)."""
    __slots__ = ("a", "b", "out")

    def __init__(self, a, b, out):
        self.a, self.b, self.out = a, b, out

    def __call__(self):
        np.matmul(self.a, self.b, out=self.out)

    @property
    def native(self):
        a, b, out = self.a, self.b, self.out
        address = blas.gemm_address(a.dtype)
        la, lb, lc = _layout(a), _layout(b), _layout(out)
        (m, k), n = a.shape, b.shape[1]
        # Vectors (NumPy calls gemv) and a @ a.T (syrk) too go through NumPy, so that a block is NumPy's
        # product bit for bit whichever thread computes it.
        if (address is None or la is None or lb is None or lc is None or lc[0] != _NO_TRANS or min(m, n) < 2
                or k == 0 or not (a.flags.aligned and b.flags.aligned and out.flags.aligned)
                or np.may_share_memory(out, a) or np.may_share_memory(out, b) or np.may_share_memory(a, b)):
            return None
        kind = worker_cpu.GEMM32 if a.dtype == np.float32 else worker_cpu.GEMM64
        return kind, (address, la[0], lb[0], m, n, k, a.ctypes.data, la[1], b.ctypes.data, lb[1], out.ctypes.data,
                      lc[1])


def _tasks(a, b, out, split):
    """The tasks of :func:`plan`'s blocks, each writing its block of out."""
    form, parts, sparse = plan(a, b, split)
    if form == "sparse rows":
        return [lambda lo=lo, hi=hi: sparse_product(*sparse, b, out, lo, hi) for lo, hi in parts]
    if form == "columns":
        return [_Product(a, b[:, lo:hi], out[:, lo:hi]) for lo, hi in parts]
    if form == "whole":
        return [_Product(a, b, out)]
    return [_Product(a[lo:hi], b, out[lo:hi]) for lo, hi in parts]


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
