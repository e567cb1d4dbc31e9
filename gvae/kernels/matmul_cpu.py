"""The CPU matrix product: NumPy's matmul, split by rows of the product over gvae's threads.

At the dense layers' shapes (M = 100-500 rows, K and N = 16-784) OpenBLAS's own threads scale poorly: two
single-threaded calls on halves of the rows run faster than one call on two of its threads. So the BLAS
is held to one thread (:mod:`.cpu.blas`); on gvae's threads, independent products given together
run one per thread (one after the other where each is under ``MIN_SIDE_BY_SIDE``), and a product of at
least ``MIN_FLOPS`` given alone is cut into blocks of rows (of columns for a wide product or a transposed
b), each computed by NumPy's matmul on its own thread. Where the BLAS's thread count cannot be set (not
OpenBLAS, or no ``/proc/self/maps`` to find it), this is NumPy's matmul on the BLAS's own threads, one
product after the other. A block that a worker computes is one ``cblas_?gemm`` call made from the
worker's native loop (:mod:`.cpu.worker_loop`), the caller's block NumPy's matmul.

A left factor that is mostly zeros (a binarised image batch: the first layer's product and its weight
gradient) is multiplied in compressed sparse rows instead (:mod:`sparse_rows_cpu`), on one thread or in
blocks of rows on gvae's threads.

These are the hand-made rules (:func:`rule`). Where tuning is on (:mod:`.cpu.tuning`), a product of at least
``MIN_FLOPS`` given alone, and a pair given together, follow this machine's measured plan instead
(:func:`plan`): the rule unless another way was measured faster here. A product computed inside a task
of gvae's threads (one part of the evaluation's samples) runs whole, on that thread. The plans decided in
this process are :data:`.cpu.state.RUNTIME`'s (``products_decided``, ``handover_products``).
"""
import numpy as np

from .backend import register
from .cpu import blas, programs, threads, tuning, worker_loop
from .cpu.state import RUNTIME
from .sparse_rows_cpu import decision_check, sparse_factor, sparse_task

MIN_FLOPS = 4e7   # below this, one call: a hand-over costs more than splitting saves
MIN_ROWS = 16     # each block gets at least this many rows (columns)
MIN_SPARSE_WORK = 2.5e6  # nonzeros x columns below which a sparse product is one call
# Multiply-adds and adds of each product below which products given together run one after the other on
# the calling thread: handing one to a worker costs more than it saves (measured on a dense layer's two
# gradients, each 2 M K N, at the shapes around this bound).
MIN_SIDE_BY_SIDE = 2e6


def rule(a, b, split=True):
    """The hand-made rule of how out = a @ b is computed (:func:`plan` measures the alternatives where it
    can): (form, blocks, sparse). ``form`` is "sparse rows" (a mostly-zero a, with
    b's rows contiguous: each block of rows in compressed form times b; ``sparse`` is
    :func:`sparse_factor`'s answer), "whole" (one NumPy matmul), or "rows" or "columns" (NumPy's matmul
    on blocks of the product's rows or columns); ``blocks`` the [(lo, hi)] ranges of rows or columns, one
    per task on gvae's threads. ``split``: the product may be cut into blocks (it is given alone, not one
    of as many products as threads)."""
    return _rule(a, b, split, _sparse(a, b))


def _sparse(a, b):
    """:func:`sparse_factor` of a where b's rows are contiguous (the compressed product reads them), else None.
    A recorded program (:mod:`.cpu.programs`) keeps the decision as a guard: a replay's data must take the
    same one."""
    if b.strides[1] != b.itemsize:
        return None
    found = sparse_factor(a)
    programs.check(lambda flags: decision_check(a, found is not None, flags))
    return found


def _rule(a, b, split, sparse):
    if sparse is not None:
        m = a.shape[0]
        parts = threads.blocks(m, MIN_ROWS) if split and sparse[2] * b.shape[1] >= MIN_SPARSE_WORK else [(0, m)]
        return "sparse rows", parts, sparse
    m, n = a.shape[0], b.shape[1]
    if not split or not _large(a, b):
        return "whole", [(0, m)], None
    # Each block's BLAS call packs the whole of the factor the blocks share: b (K, N) for row blocks, a
    # (M, K) for column blocks. So a wide product (M < N: a batch of 100 rows into 500-784 units) is cut
    # into column blocks, a tall one into row blocks (measured faster at 100 x 500 x 500 on two threads).
    # A column block of W.T is a row block of W: each task is one whole-row NT product, no copy (faster
    # than row blocks, and than W.T copied first).
    if m < n or not b.flags.c_contiguous:
        return "columns", threads.blocks(n, MIN_ROWS), None
    return "rows", threads.blocks(m, MIN_ROWS), None


def _name(found):
    """The tuning's name of a (form, blocks, sparse) plan."""
    form, parts, _ = found
    if len(parts) == 1:
        return {"sparse rows": "sparse whole", "rows": "whole", "columns": "whole"}.get(form, form)
    return form


def _cut(name, a, b, sparse):
    """The (form, blocks, sparse) plan of a tuning's name."""
    m, n = a.shape[0], b.shape[1]
    if name == "sparse rows":
        return "sparse rows", threads.blocks(m, MIN_ROWS), sparse
    if name == "sparse whole":
        return "sparse rows", [(0, m)], sparse
    if name == "rows":
        return "rows", threads.blocks(m, MIN_ROWS), None
    if name == "columns":
        return "columns", threads.blocks(n, MIN_ROWS), None
    return "whole", [(0, m)], None


def _choices(a, b, sparse):
    """The names of the ways a product given alone may be computed: in one call on this thread, in blocks
    of rows or of columns on gvae's threads, and for a mostly-zero a, in compressed rows, whole or in
    blocks. One call on the BLAS's own threads is not among them: measured alone it won some shapes, but
    its threads then spun beside gvae's, and the whole step ran slower with it (docs/explanation/threads.md)."""
    m, n = a.shape[0], b.shape[1]
    names = ["whole"] + ["rows"] * (m >= 2 * MIN_ROWS) + ["columns"] * (n >= 2 * MIN_ROWS)
    if sparse is not None:
        names += ["sparse whole"] + ["sparse rows"] * (m >= 2 * MIN_ROWS)
    return names


def _side(x):
    """One letter for an operand's layout: N (rows contiguous), T (a transposed view), S (neither); in
    lower case when its rows (columns) are spaced wider than it is (a block of a larger array)."""
    found = _layout(x)
    if found is None:
        return "S"
    letter = "N" if found[0] == _NO_TRANS else "T"
    width = x.shape[1] if found[0] == _NO_TRANS else x.shape[0]
    return letter if found[1] == width else letter.lower()


def key(a, b, sparse):
    """The tuning's key of a @ b given alone: dtype, shape, layouts, thread count, sparsity."""
    (m, k), n = a.shape, b.shape[1]
    return (f"matmul {a.dtype} {m}x{k}x{n} {_side(a)}{_side(b)} {threads.get_threads()} threads"
            + (" sparse" if sparse is not None else ""))


def _geometry(a, b, sparse):
    """What a plan depends on, cheaply compared: a step asks for the same few, again and again."""
    return a.dtype.char, a.shape, a.strides, b.shape, b.strides, sparse is None


# The plans decided in this process (RUNTIME.products_decided: (geometry..., thread count, tuning
# generation) -> name) are forgotten when they reach _MOST (a program of ever new shapes), since each is
# looked up again cheaply in the kept plans.
_MOST = 4096


def _decide(decided, name):
    if len(RUNTIME.products_decided) >= _MOST:
        RUNTIME.products_decided.clear()
    RUNTIME.products_decided[decided] = name


def _measurable(a, b, out):
    """Whether candidates may write ``out`` again and again: it exists and overlaps neither factor."""
    return out is not None and not np.may_share_memory(out, a) and not np.may_share_memory(out, b)


def _handover():
    """A native task for each of gvae's workers and one for the caller (a tiny product each): what the
    step's next split call does, after each candidate of a tuning (:func:`tuning.fastest`)."""
    count = threads.get_threads()
    handover = RUNTIME.handover_products
    if count not in handover:
        tiny = np.ones((8, 8), np.float32)
        handover[count] = [_Product(tiny, tiny, np.empty_like(tiny)) for _ in range(count)]
    threads.run(handover[count])


def plan(a, b, split=True, out=None):
    """How out = a @ b is computed, as :func:`rule` answers: its rule, unless it is given alone (``split``)
    on more than one of gvae's threads while tuning is on (:mod:`.cpu.tuning`) and has at least MIN_FLOPS
    multiply-adds and adds; then this machine's kept plan for its :func:`key`, and where there is none
    yet, the fastest of :func:`_choices`, measured now on these operands (written into ``out``; without
    an ``out`` to write, the rule)."""
    return _plan(a, b, split, out, _sparse(a, b))


def _flops(a, b):
    """The multiply-adds and adds of a @ b: 2 M K N."""
    return 2.0 * a.shape[0] * a.shape[1] * b.shape[1]


def _large(a, b):
    """Whether a @ b is worth measuring (a tuning takes up to tuning.BUDGET_SECONDS, far longer than a
    smaller product)."""
    return _flops(a, b) >= MIN_FLOPS


def _plan(a, b, split, out, sparse):
    if not split or threads.get_threads() == 1 or not _large(a, b) or not tuning.active():
        return _rule(a, b, split, sparse)
    decided = (_geometry(a, b, sparse), threads.get_threads(), tuning.generation())
    name = RUNTIME.products_decided.get(decided)
    if name is None:
        choices = _choices(a, b, sparse)
        name = _kept_or_measured(
            decided, key(a, b, sparse), choices, _name(_rule(a, b, split, sparse)), _measurable(a, b, out),
            lambda: {c: (lambda c=c: _compute(tasks(a, b, out, _cut(c, a, b, sparse)))) for c in choices})
        if name is None:
            return _rule(a, b, split, sparse)
    return _cut(name, a, b, sparse)


def _kept_or_measured(decided, known, choices, default, measurable, candidates):
    """The plan named ``known``: this machine's kept one, else the fastest of ``candidates()`` measured now
    (:func:`tuning.tune`), remembered for ``decided``; None where none is kept and it cannot be measured
    (its output overlaps a factor)."""
    name = tuning.recorded(known, choices)
    if name is None:
        if not measurable:
            return None
        name = tuning.tune(known, candidates(), default, _handover)
    _decide(decided, name)
    return name


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
    """out = a @ b, a task of :func:`.cpu.threads.run`: NumPy's matmul when called, and for a worker the
    same product as one BLAS call (``native``: the worker_loop kind and the cblas arguments; None where the
    BLAS cannot take it as it is, and the worker calls NumPy's matmul instead)."""
    __slots__ = ("a", "b", "out")

    def __init__(self, a, b, out):
        self.a, self.b, self.out = a, b, out

    def __call__(self):
        np.matmul(self.a, self.b, out=self.out)

    def arrays(self):
        return [self.a, self.b, self.out]

    def with_arrays(self, move):
        """The same product on ``move`` of each of its arrays (:class:`.cpu.entries.Call`'s)."""
        return _Product(move(self.a), move(self.b), move(self.out))

    @property
    def native(self):
        a, b, out = self.a, self.b, self.out
        (m, k), n = a.shape, b.shape[1]
        if (k == 0 or not (a.flags.aligned and b.flags.aligned and out.flags.aligned)
                or np.may_share_memory(out, a) or np.may_share_memory(out, b) or np.may_share_memory(a, b)):
            return None
        if min(m, n) == 1:
            return _vector_product(a, b, out)
        address = blas.gemm_address(a.dtype)
        la, lb, lc = _layout(a), _layout(b), _layout(out)
        # a @ a.T (NumPy calls syrk) goes through NumPy, so that a block is NumPy's product bit for bit
        # whichever thread computes it.
        if address is None or la is None or lb is None or lc is None or lc[0] != _NO_TRANS:
            return None
        kind = worker_loop.GEMM32 if a.dtype == np.float32 else worker_loop.GEMM64
        return kind, (address, la[0], lb[0], m, n, k, a.ctypes.data, la[1], b.ctypes.data, lb[1], out.ctypes.data,
                      lc[1])


def _step(x, axis):
    """The stride of ``x`` along ``axis`` in items, where it is a positive whole number of them, else None."""
    stride = x.strides[axis]
    return stride // x.itemsize if stride > 0 and stride % x.itemsize == 0 else None


def _vector_product(a, b, out):
    """The ``cblas_?gemv`` task of out = a @ b where a or b is a vector ((m, k) @ (k, 1) or (1, k) @ (k, n)),
    the call NumPy's matmul makes for it (the same bits: tests/test_threads.py), or None (a product of two
    vectors, which NumPy takes to its dot; strides the BLAS cannot take)."""
    (m, k), n = a.shape, b.shape[1]
    address = blas.gemv_address(a.dtype)
    if address is None or m == n == 1:
        return None
    # y = M x for the matrix M (a, or b transposed) stored row-major or transposed, x and y of any step.
    matrix, x, y = (a, b[:, 0], out[:, 0]) if n == 1 else (b.T, a[0], out[0])
    rows, cols = matrix.shape
    layout, incx, incy = _layout(matrix), _step(x, 0), _step(y, 0)
    if layout is None or incx is None or incy is None:
        return None
    trans, ld = layout
    shape = (rows, cols) if trans == _NO_TRANS else (cols, rows)  # the stored matrix's, row-major
    kind = worker_loop.GEMV32 if a.dtype == np.float32 else worker_loop.GEMV64
    return kind, (address, trans, *shape, matrix.ctypes.data, ld, x.ctypes.data, incx, y.ctypes.data, incy)


def tasks(a, b, out, found):
    """The tasks of the plan ``found`` (form, blocks, sparse), each writing its block of out."""
    form, parts, sparse = found
    if form == "sparse rows":
        return [sparse_task(*sparse, b, out, lo, hi) for lo, hi in parts]
    if form == "columns":
        return [_Product(a, b[:, lo:hi], out[:, lo:hi]) for lo, hi in parts]
    if form == "whole":
        return [_Product(a, b, out)]
    return [_Product(a[lo:hi], b, out[lo:hi]) for lo, hi in parts]


def _compute(work):
    """Run the tasks ``work`` on gvae's threads, each product on one BLAS thread (:mod:`.cpu.blas`: no spinning
    BLAS workers between gvae's, and the rounding of gvae's thread count, not of the process's BLAS
    setting)."""
    with blas.one_thread():
        threads.run(work)


def _alone(products, outs, sparse):
    """Each product planned and computed alone, one after the other."""
    for (a, b, _), out, known in zip(products, outs, sparse):
        _compute(tasks(a, b, out, _plan(a, b, True, out, known)))


@register("matmul")
def matmul(products):
    """[(a, b, out or None)] -> [a @ b], each into its out (allocated when None)."""
    outs = [np.empty((a.shape[0], b.shape[1]), dtype=a.dtype) if out is None else out for a, b, out in products]
    sparse = [_sparse(a, b) for a, b, _ in products]
    count = threads.get_threads()
    if (count == 1 or not blas.settable() or threads.in_a_call()
            or all(_flops(a, b) < MIN_SIDE_BY_SIDE for a, b, _ in products)):
        _one_by_one(products, outs, sparse)
        return outs
    if len(products) < count:
        _alone(products, outs, sparse)
        return outs
    if (any(_large(a, b) for a, b, _ in products) and tuning.active()
            and _pair_plan(products, outs, sparse) == "one by one"):
        _alone(products, outs, sparse)
        return outs
    _whole(products, outs, sparse)
    return outs


def _one_by_one(products, outs, sparse):
    """Each product whole, one after the other on this thread (one thread, a call inside another's task,
    products too small for a hand-over, or a BLAS whose thread count cannot be held, whose own threads then
    compute it): :func:`_unsplit` tasks, called directly (not through :func:`threads.run`)."""
    with blas.one_thread():
        threads.run_here(_unsplit(products, outs, sparse))


def _pair_plan(products, outs, sparse):
    """As many products as threads (a dense layer's two gradients): "side by side", each whole on one
    thread (the rule), or "one by one", each in its own plan, as this machine's plan says (measured now,
    on these operands, where it has none)."""
    decided = (tuple(_geometry(a, b, s) for (a, b, _), s in zip(products, sparse)), threads.get_threads(),
               tuning.generation())
    name = RUNTIME.products_decided.get(decided)
    if name is None:
        name = _kept_or_measured(
            decided, "side by side: " + " & ".join(key(a, b, s) for (a, b, _), s in zip(products, sparse)),
            ("side by side", "one by one"), "side by side",
            all(_measurable(a, b, out) for (a, b, _), out in zip(products, outs)),
            lambda: {"side by side": lambda: _whole(products, outs, sparse),
                     "one by one": lambda: _alone(products, outs, sparse)})
    return name or "side by side"


def _whole(products, outs, sparse):
    """Each product whole on one thread, side by side on gvae's threads."""
    _compute(_unsplit(products, outs, sparse))


def _unsplit(products, outs, sparse):
    """The :func:`tasks` of each product's rule when it may not be cut: one task a product."""
    return [task for (a, b, _), out, known in zip(products, outs, sparse)
            for task in tasks(a, b, out, _rule(a, b, False, known))]
