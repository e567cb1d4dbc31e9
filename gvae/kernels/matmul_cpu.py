"""The CPU matrix product: NumPy's matmul, run the way this machine's plan says is fastest.

At the dense layers' shapes (M = 100-500 rows, K and N = 16-784, and 12,100 rows in evaluation) which way
of using two cores wins depends on the CPU: on a 2-core AVX-512 machine 500 x 500 @ 500 x 784 ran at 93
GFLOP/s on one thread, 126 on OpenBLAS's two and 170-185 as two one-thread calls on halves of the rows,
while on a Zen 3 gvae's own split of the 100-row products ran slower than one thread. So on gvae's
threads (:func:`gvae.kernels.set_threads` above 1) each product of at least ``MIN_FLOPS`` runs by the way
:mod:`plans` measured fastest for its shape on this machine: one BLAS call on one thread, one on the
BLAS's own threads, or row or column blocks on gvae's threads (a one-thread BLAS call each); two
independent products (a dense layer's gradients) run side by side, one thread each, or one after the
other, as planned. Outside a planned call the BLAS is held to one thread. Where the BLAS's thread count
cannot be set (not OpenBLAS, or no ``/proc/self/maps`` to find it), or on one thread, this is NumPy's
matmul unchanged.

A left factor that is mostly zeros (a binarised image batch: the first layer's product and its weight
gradient) is multiplied in compressed sparse rows instead (:mod:`sparse_rows_cpu`), on one thread or in
blocks of rows on gvae's threads.
"""
import ctypes
import threading

import numpy as np

from . import plans, threads
from .backend import register
from .sparse_rows_cpu import csr_product, sparse_rows

MIN_FLOPS = 4e7   # below this (~0.4 ms on one core), one call: a hand-over costs 20-60 us
MIN_ROWS = 16     # each block gets at least this many rows (columns)
MIN_SPARSE_WORK = 2.5e6  # nonzeros x columns below which a sparse product is one call (~0.2 ms)

_controls = {}


def _openblas_threads():
    """(get, set) of the thread count of the OpenBLAS that NumPy loaded, as ctypes functions, or None.
    Found from the libraries mapped into this process, under the symbol names of NumPy's wheels
    (``scipy_openblas_*64_``) and of plain builds."""
    if "openblas" in _controls:
        return _controls["openblas"]
    found = None
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]})
    except OSError:
        paths = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("scipy_openblas", ""),
                               ("openblas", "")):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                found = (get, put)
                break
        if found:
            break
    _controls["openblas"] = found
    return found


class _OneBlasThread:
    """While entered (by any number of threads at once), the BLAS runs each call on the calling thread."""
    _lock = threading.Lock()
    _depth = 0
    _saved = 1

    def __init__(self, controls):
        self.get, self.put = controls

    def __enter__(self):
        with self._lock:
            if _OneBlasThread._depth == 0:
                _OneBlasThread._saved = self.get()
                if _OneBlasThread._saved != 1:
                    self.put(1)
            _OneBlasThread._depth += 1

    def __exit__(self, *exc):
        with self._lock:
            _OneBlasThread._depth -= 1
            if _OneBlasThread._depth == 0 and _OneBlasThread._saved != 1:
                self.put(_OneBlasThread._saved)


def _sparse_tasks(a, b, out, split):
    """Tasks computing out = a @ b for a mostly-zero a (with b's rows contiguous) as sparse rows, in blocks
    of rows for gvae's threads when ``split`` and the product is large enough; None for a dense a."""
    form = sparse_rows(a) if b.strides[1] == b.itemsize else None
    if form is None:
        return None
    indptr, indices, values = form
    m = a.shape[0]
    parts = threads.blocks(m, MIN_ROWS) if split and values.size * b.shape[1] >= MIN_SPARSE_WORK else [(0, m)]
    return [lambda lo=lo, hi=hi: csr_product(indptr, indices, values, b, out, lo, hi) for lo, hi in parts]


def _layout(x):
    return "C" if x.flags.c_contiguous else "F" if x.flags.f_contiguous else "S"


def _key(a, b):
    m, k = a.shape
    return f"matmul {a.dtype} {m}x{k}x{b.shape[1]} a{_layout(a)} b{_layout(b)} threads {threads.get_threads()}"


def _ways(a, b, out, controls):
    """{name: f}, the ways to compute out = a @ b (dense) on gvae's threads, each a whole product:
    ``one`` NumPy's matmul on this thread; ``blas`` NumPy's matmul on the BLAS's own threads (as many as
    gvae's); ``rows``/``cols`` blocks of rows/columns, one per thread, each a one-thread BLAS call. Each
    block's BLAS call packs the whole of the factor the blocks share (b for row blocks, a for column
    blocks), and a column block of W.T is a row block of W: an NT product, no copy."""
    m, n = out.shape
    ways = {"one": lambda: np.matmul(a, b, out=out)}
    ways["blas"] = lambda: _on_blas_threads(controls, lambda: np.matmul(a, b, out=out))
    if m >= 2 * MIN_ROWS:
        ways["rows"] = lambda: threads.run([lambda lo=lo, hi=hi: np.matmul(a[lo:hi], b, out=out[lo:hi])
                                            for lo, hi in threads.blocks(m, MIN_ROWS)])
    if n >= 2 * MIN_ROWS:
        ways["cols"] = lambda: threads.run([lambda lo=lo, hi=hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])
                                            for lo, hi in threads.blocks(n, MIN_ROWS)])
    return ways


def _on_blas_threads(controls, f):
    """f() with the BLAS on as many threads as gvae's, then back on one (inside :class:`_OneBlasThread`)."""
    controls[1](threads.get_threads())
    try:
        f()
    finally:
        controls[1](1)


def _planned(a, b, out, controls):
    """A callable computing out = a @ b (dense) the way this machine's plan says (:mod:`plans`): one call
    below ``MIN_FLOPS``, where a hand-over costs more than it can save."""
    ways = _ways(a, b, out, controls)
    if 2.0 * a.shape[0] * a.shape[1] * b.shape[1] < MIN_FLOPS:
        return ways["one"]
    return ways[plans.choose(_key(a, b), lambda: ways)]


@register("matmul")
def matmul(products):
    """[(a, b, out or None)] -> [a @ b], each into its out (allocated when None)."""
    outs = [np.empty((a.shape[0], b.shape[1]), dtype=a.dtype) if out is None else out for a, b, out in products]
    controls = _openblas_threads() if threads.get_threads() > 1 else None
    if controls is None:
        for (a, b, _), out in zip(products, outs):
            for task in _sparse_tasks(a, b, out, split=False) or [lambda: np.matmul(a, b, out=out)]:
                task()
        return outs
    # Every product runs on one BLAS thread while gvae's threads are in use (unless its plan says the
    # BLAS's own threads): OpenBLAS's workers, woken by a product it ran on several, would spin on the
    # core the next split product needs.
    with _OneBlasThread(controls):
        together = len(products) >= threads.get_threads()  # as many products as threads: one each, whole
        sparse = [_sparse_tasks(a, b, out, split=not together) for (a, b, _), out in zip(products, outs)]
        if together and any(tasks is not None for tasks in sparse):
            threads.run([t for tasks, (a, b, _), out in zip(sparse, products, outs)
                         for t in (tasks or [lambda a=a, b=b, out=out: np.matmul(a, b, out=out)])])
            return outs
        ways = [(lambda tasks=tasks: threads.run(tasks)) if tasks is not None else _planned(a, b, out, controls)
                for tasks, (a, b, _), out in zip(sparse, products, outs)]
        flops = sum(2.0 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in products)
        if not together or len(products) == 1 or flops < MIN_FLOPS:
            for way in ways:
                way()
            return outs
        # Independent dense products (a dense layer's two gradients): side by side, one thread each and
        # whole, or one after the other, each as planned, whichever this machine's plan says.
        candidates = {"side": lambda: threads.run([lambda a=a, b=b, out=out: np.matmul(a, b, out=out)
                                                   for (a, b, _), out in zip(products, outs)]),
                      "each": lambda: [way() for way in ways]}
        key = "matmuls " + " + ".join(_key(a, b) for a, b, _ in products)
        candidates[plans.choose(key, lambda: candidates)]()
    return outs
