"""Numba CPU kernels of :mod:`arithmetic`: elementwise a op b, log, exp, log1p, expm1, sqrt, |x|, sign and the step,
and sums along one axis, on 2-D views whose rows may lie apart (a block of columns, as the posterior's mean
and scale are of its head's output), each row read as a contiguous array (:func:`.cpu.entries.row_of`), so
that the loops vectorise; a transposed matrix is copied by its columns first.

Outside a recording (:func:`.cpu.programs.recording_open`) the elementwise calls are NumPy's own
operators, which cost less Python per call and give the same bits; the kernels run while a program is
recorded, so that the replay runs them. Every operand is seen as (rows, columns) of the result's (M, N)
(its last axis N, the others M): R rows of N or 1 columns, where R is 1, M, or the rows of the result's
trailing axes that the operand has (broadcast over leading axes: row i reads the operand's row i % R), as
NumPy broadcasts. The arithmetic is IEEE's, one operation per element, so the results are NumPy's bit for
bit. Sums accumulate in float64 and round once, recorded or not (more accurate than NumPy's pairwise
float32 sums, so not their bits); the unary maths are the kernel's, recorded or not, too (the C library's
functions, an ulp at most from NumPy's SIMD ones; sqrt, |x|, sign and the step are exact either way). Large
calls run in row blocks on gvae's threads. An operand that does not fit those views (other broadcasts, mixed
dtypes, integers) goes through NumPy, and a recording open then is refused
(:func:`.cpu.programs.unrecorded`)."""

import math

import numpy as np

from .backend import register
from .cpu import programs, threads
from .cpu.entries import INT, Call, Entry, array, row_of, row_spacing, run_blocks
from .cpu.jit import jit
from .cpu.specialise import template, variants

ADD, SUBTRACT, MULTIPLY, DIVIDE, COPY, XLOGY, XDIVY = 0, 1, 2, 3, 4, 5, 6
_CODES = {"add": ADD, "subtract": SUBTRACT, "multiply": MULTIPLY, "divide": DIVIDE, "xlogy": XLOGY, "xdivy": XDIVY}
_ALWAYS_KERNEL = ("xlogy", "xdivy")  # arithmetic.LIMITS: NumPy has no operator of theirs, nor the kernel's log
LOG, EXP, LOG1P, SQRT, ABSOLUTE, SIGN, HEAVISIDE, EXPM1 = 0, 1, 2, 3, 4, 5, 6, 7
_UNARY_CODES = {"log": LOG, "exp": EXP, "log1p": LOG1P, "expm1": EXPM1, "sqrt": SQRT, "absolute": ABSOLUTE,
                "sign": SIGN, "heaviside": HEAVISIDE}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@jit(inline="always")
def _apply(op, x, y):
    if op == ADD:
        return x + y
    if op == SUBTRACT:
        return x - y
    if op == MULTIPLY:
        return x * y
    if op == DIVIDE:
        return x / y
    if op == XLOGY:
        return 0.0 if x == 0 and y == y else x * math.log(y)
    if op == XDIVY:
        return 0.0 if x == 0 and y == y else x / y
    return x


@template(error_model="numpy")
def _binary(a, b, out, lo, hi):
    """out <- a op b (op COPY: a) for out's rows lo..hi-1, op the variant's ``_OP``, each operand (R rows, R
    dividing M; N or 1 columns) broadcast to out's (M, N), row i reading the operand's row i % R."""
    n = out.shape[1]
    wide_a, wide_b = a.shape[1] == n, b.shape[1] == n
    ra, rb = a.shape[0], b.shape[0]
    for i in range(lo, hi):
        ai, bi, oi = row_of(a, i % ra), row_of(b, i % rb), row_of(out, i)
        if wide_a and wide_b:
            for j in range(n):
                oi[j] = _apply(_OP, ai[j], bi[j])
        elif wide_a:
            y = bi[0]
            for j in range(n):
                oi[j] = _apply(_OP, ai[j], y)
        elif wide_b:
            x = ai[0]
            for j in range(n):
                oi[j] = _apply(_OP, x, bi[j])
        else:
            v = _apply(_OP, ai[0], bi[0])
            for j in range(n):
                oi[j] = v


# A kernel per operation, compiled with it fixed: with the operation a number read at run time, LLVM did not
# vectorise the loop, and a (100, 1024) float32 product ran 6x slower than NumPy's (docs/performance.md).
_BINARY = {op: Entry(variants((_binary,), f"_op{op}", _OP=op)[0], a=array("am", "an", strided=True),
                     b=array("bm", "bn", strided=True), out=array("m", "n", strided=True), lo=INT, hi=INT)
           for op in (ADD, SUBTRACT, MULTIPLY, DIVIDE, COPY, XLOGY, XDIVY)}
_BINARY_SECONDS = 0.7e-9  # an element of a broadcast product out of cache, on one thread (measured)


def _run_binary(a, b, op, out):
    """:func:`_binary` of the operation ``op`` over out's rows, in row blocks on gvae's threads where it is
    large (the blocks write apart rows, so the bits are a single call's)."""
    run_blocks(_BINARY[op], lambda k, lo, hi: (a, b, out, lo, hi), threads.row_blocks(*out.shape, _BINARY_SECONDS))


@jit(inline="always")
def _unary_value(op, v):
    if op == LOG:
        return math.log(v)
    if op == EXP:
        return math.exp(v)
    if op == LOG1P:
        return math.log1p(v)
    if op == EXPM1:
        return math.expm1(v)
    if op == SQRT:
        return math.sqrt(v)
    if op == ABSOLUTE:
        return abs(v)
    if op == SIGN:
        return 1.0 if v > 0 else (-1.0 if v < 0 else (0.0 if v == 0 else v))
    return 1.0 if v > 0 else (0.0 if v <= 0 else v)  # HEAVISIDE


@jit(error_model="numpy")
def _unary(x, op, out, lo, hi):
    """out[i] <- log(x[i]) (op LOG), exp(x[i]) (EXP), log1p(x[i]) (LOG1P), expm1(x[i]) (EXPM1), sqrt(x[i])
    (SQRT), |x[i]| (ABSOLUTE), sign(x[i]) (SIGN: NumPy's, +0 at either zero, NaN at NaN) or the step
    [x[i] > 0] (HEAVISIDE: NumPy's heaviside(x, 0), NaN at NaN) for the rows i in [lo, hi) of the (M, N) x
    and out (op is read at run time; the C library's log, exp, log1p and expm1 are one call an element)."""
    n = out.shape[1]
    for i in range(lo, hi):
        xi, oi = row_of(x, i), out[i]
        for j in range(n):
            oi[j] = _unary_value(op, xi[j])


_UNARY = Entry(_unary, x=array("m", "n", strided=True), op=INT, out=array("m", "n"), lo=INT, hi=INT)


@jit(error_model="numpy")
def _sum(a, axis, out, acc):
    """out <- the sums of a (M, N) over its rows (axis 0: out (N,)), along each row (axis 1: out (M,)) or
    of all its items in row-major order (axis 2: out (1,)), accumulated in float64; axis 3 sums over no
    axis (out (M N,) <- a, row by row). ``acc`` (N,) float64 scratch of axis 0."""
    m, n = a.shape
    if axis == 0:
        # Row by row into float64 running sums: each column's sum in the same order as a column walk
        # (so the same bits), but reading a's rows whole, vectorised (the column walk read with a stride
        # and ran 4-5x slower at (500, 784)).
        for j in range(n):
            acc[j] = 0.0
        for i in range(m):
            row = row_of(a, i)
            for j in range(n):
                acc[j] += row[j]
        for j in range(n):
            out[j] = acc[j]
    elif axis == 1:
        for i in range(m):
            acc = 0.0
            row = row_of(a, i)
            for j in range(n):
                acc += row[j]
            out[i] = acc
    elif axis == 2:
        acc = 0.0
        for i in range(m):
            row = row_of(a, i)
            for j in range(n):
                acc += row[j]
        out[0] = acc
    else:
        for i in range(m):
            row = row_of(a, i)
            for j in range(n):
                out[i * n + j] = row[j]


_SUM = Entry(_sum, a=array("m", "n", strided=True), axis=INT, out=array("k"), acc=array("w", dtype=np.float64))


def _weak(x, other):
    """A Python number as a 0-d array of the other operand's dtype (NumPy's rule for Python scalars), a
    NumPy scalar as a 0-d array of its own."""
    if type(x) in (int, float) and hasattr(other, "dtype") and other.dtype in _FLOATS:
        return np.asarray(x, dtype=other.dtype)
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def _view(x, rows, cols):
    """x as a (rows, cols) view whose rows are each contiguous, or None where no view is."""
    try:
        v = np.reshape(x, (rows, cols), copy=False)
    except ValueError:
        return None
    return v if row_spacing(v, v.dtype) is not None else None


def _operand(x, shape):
    """The 2-D view of the operand ``x`` of a result of ``shape`` (see the module's docstring), or None."""
    m, n = (math.prod(shape[:-1]), shape[-1]) if shape else (1, 1)
    if x.ndim > len(shape):
        return None
    full = (1,) * (len(shape) - x.ndim) + x.shape
    lead, last = full[:-1], (full[-1] if full else 1)
    ones = next((k for k, s in enumerate(lead) if s != 1), len(lead))  # the leading axes it is broadcast over
    rows = math.prod(lead[ones:]) if lead[ones:] == shape[ones:len(lead)] else None
    cols = n if last == n else 1 if last == 1 else None
    if rows is None or cols is None:
        return None
    return _view(x, rows, cols)


def _kernel(dtype, *arrays):
    """Whether the kernels take ``arrays``: NumPy arrays, all of the float dtype ``dtype``."""
    return dtype in _FLOATS and all(isinstance(a, np.ndarray) and a.dtype == dtype for a in arrays)


def _numpy(op, a, b, out):
    """a op b by NumPy's own operator (``out`` None: a new array); xlogy and xdivy by NumPy's pieces."""
    if op not in _ALWAYS_KERNEL:
        return getattr(np, op)(a, b, out=out)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.multiply(a, np.log(b)) if op == "xlogy" else np.divide(a, b)
        result = np.where((np.asarray(a) == 0) & ~np.isnan(b), np.zeros_like(value), value)
    if out is None:
        return result
    np.copyto(out, result)
    return out


@register("binary")
def binary(op, a, b, out):
    if not programs.recording_open() and op not in _ALWAYS_KERNEL:
        return _numpy(op, a, b, out)
    a, b = _weak(a, b), _weak(b, a)
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        programs.unrecorded(f"{op} of {type(a).__name__} and {type(b).__name__}")
        return _numpy(op, a, b, out)
    shape = np.broadcast_shapes(a.shape, b.shape)
    if out is None and _kernel(a.dtype, b):
        out = np.empty(shape, a.dtype)
    found = None
    if out is not None and out.shape == shape and _kernel(a.dtype, b, out):
        # A transposed matrix operand is copied to C order first (a recorded copy by its columns).
        a, b = (_in_rows(v, shape) for v in (a, b))
        found = _operand(a, shape), _operand(b, shape), _operand(out, shape)
    if found is None or any(f is None for f in found):
        programs.unrecorded(f"{op} of {a.dtype}{a.shape} and {b.dtype}{b.shape}")
        return _numpy(op, a, b, out)
    a2, b2, out2 = found
    _run_binary(a2, b2, _CODES[op], out2)
    return out


@register("unary")
def unary(op, x):
    view = _operand(x, x.shape) if _kernel(getattr(x, "dtype", None), x) else None
    if view is None:
        programs.unrecorded(f"{op} of {getattr(x, 'dtype', type(x).__name__)}{getattr(x, 'shape', '')}")
        return np.heaviside(x, 0) if op == "heaviside" else getattr(np, op)(x)
    out = np.empty(x.shape, x.dtype)
    # (blocks of rows, costed by the C library's log, exp, log1p and expm1 per element; NumPy's SIMD ones are cheaper)
    run_blocks(_UNARY, lambda part, lo, hi: (view, _UNARY_CODES[op], out.reshape(view.shape), lo, hi),
               threads.row_blocks(*view.shape, 5e-9))
    return out


@jit(error_model="numpy")
def _transposed(src, out):
    """out (M, N) <- src.T for src (N, M), each array's rows contiguous (a transposed matrix copied to C
    order)."""
    m, n = out.shape
    for i in range(m):
        oi = row_of(out, i)
        for j in range(n):
            oi[j] = src[j, i]


_TRANSPOSED = Entry(_transposed, src=array("n", "m", strided=True), out=array("m", "n", strided=True))


def _transposed_views(src, dst):
    """(src.T, dst) as the rows :func:`_transposed` takes, where src and dst are matrices of one shape and
    src is a transposed one (its columns contiguous), else None."""
    if src.ndim != 2 or src.shape != dst.shape:
        return None
    views = src.T, dst
    return views if all(row_spacing(v, dst.dtype) is not None for v in views) else None


def _in_rows(x, shape):
    """x, or its C-ordered copy (:func:`copy_into`) where x is a transposed matrix of the result's shape."""
    if (x.ndim == 2 and x.shape == tuple(shape) and _operand(x, shape) is None
            and row_spacing(x.T, x.dtype) is not None):
        y = np.empty(x.shape, x.dtype)
        copy_into(x, y)
        return y
    return x


@register("copy_into")
def copy_into(src, dst):
    if not programs.recording_open():
        dst[...] = src
        return
    src = _weak(src, dst)
    found = turned = None
    if isinstance(src, np.ndarray) and _kernel(dst.dtype, src, dst) and src.ndim <= dst.ndim:
        found = _operand(src, dst.shape), _operand(dst, dst.shape)
        if found[0] is None:  # a transposed matrix (a transpose's gradient, say): copied by its columns
            turned = _transposed_views(src, dst)
    if turned is not None:
        threads.run_here([Call(_TRANSPOSED, turned)])
        return
    if found is None or any(f is None for f in found):
        programs.unrecorded(f"a copy of {getattr(src, 'shape', src)} into {dst.dtype}{dst.shape}")
        dst[...] = src
        return
    _run_binary(found[0], found[0], COPY, found[1])


@register("broadcast_to")
def broadcast_to(x, shape):
    if not programs.recording_open():
        return np.broadcast_to(x, shape)
    out = np.empty(shape, x.dtype)
    copy_into(x, out)
    return out


def _sum_plan(x, axis):
    """(2-D view, the kernel's axis code, the result's shape without kept axes, the axes) of x.sum(axis)
    where the kernel takes it: a sum over the first k axes (the view's rows), over the last ones (along
    its rows), over all or over none. Axes of one item are dropped first (a view whatever their strides),
    so that the sum of a slice needs no copy."""
    ndim = x.ndim
    if ndim == 0:
        return None
    axes = tuple(range(ndim)) if axis is None else tuple(
        sorted(a % ndim for a in (axis if isinstance(axis, (tuple, list)) else (axis,))))
    k = len(axes)
    if len(set(axes)) != k or k == 0:
        return None
    shape = tuple(s for i, s in enumerate(x.shape) if i not in axes)
    kept = [i for i in range(ndim) if x.shape[i] != 1]
    sizes = [x.shape[i] for i in kept]
    summed = tuple(j for j, i in enumerate(kept) if i in axes)
    n, k = len(kept), len(summed)
    if k in (0, n):  # over none (all summed axes of one item) or over all
        split, along = max(n - 1, 0), 3 if k == 0 else 2
    elif summed == tuple(range(n - k, n)):  # the last k
        split, along = n - k, 1
    elif summed == tuple(range(k)):  # the first k
        split, along = k, 0
    else:
        return None
    view = _view(x, math.prod(sizes[:split]), math.prod(sizes[split:]))
    return None if view is None else (view, along, shape, axes)


@register("sum_axes")
def sum_axes(x, axis, keepdims):
    plan = _sum_plan(x, axis) if _kernel(getattr(x, "dtype", None), x) else None
    if plan is None and _kernel(getattr(x, "dtype", None), x):
        # A layout the kernel cannot view (a broadcast; a slice of a gradient's columns, as a concatenation's
        # VJP makes them): copied first, so that the sum is the kernel's whether or not a recording is open.
        # The copy is a kernel's where x's rows are evenly spaced (a recording keeps it), NumPy's elsewhere
        # (copy_into refuses the recording then).
        dense = np.empty(x.shape, x.dtype)
        copy_into(x, dense)
        plan = _sum_plan(dense, axis)
    if plan is None:
        programs.unrecorded(f"a sum of {getattr(x, 'dtype', '')}{getattr(x, 'shape', '')} over {axis}")
        return x.sum(axis=axis, keepdims=keepdims)
    view, along, shape, axes = plan
    out = np.empty(shape, x.dtype)
    acc = np.empty(view.shape[1] if along == 0 else 0, np.float64)
    threads.run_here([Call(_SUM, (view, along, out.reshape(-1), acc))])
    if keepdims:
        out = out.reshape(tuple(1 if i in axes else s for i, s in enumerate(x.shape)))
    return out
