"""CPU kernel of :mod:`banded_lu`: LU factorisation with partial pivoting of general band matrices and the
solve with it, batched, in LAPACK's way (gbtrf/gbtrs: the row interchanges widen the upper band from u to
l + u, so the factor needs l more rows than the matrix).

A matrix of n rows with l sub- and u super-diagonals is in SciPy's banded storage, ``ab[u + i - j, j] =
a[i, j]`` (l + u + 1 rows). The factor is written into ``work`` (2 l + u + 1, n), ``work[l + u + i - j, j]``
holding U's entry (i <= j) or L's multiplier (i > j), with the pivot rows in ``piv``: one scratch of each for
a block of systems, reused system after system, so that it stays in the cache. The arithmetic is in the
arrays' dtype, as LAPACK's sgbsv and dgbsv.

A batch runs S systems side by side (:func:`_gbsv_lanes`), S = _BYTES / the dtype's size (16 float64,
32 float32): one value of each system is one vector of S lanes (:class:`_Lanes`), so that every operation
of the factorisation and the solve is one vector operation for S systems. The pivot choices and
interchanges, branches in the scalar kernel (:func:`_gbsv`), are selects lane by lane; the systems that do
not fill a group of S take the scalar kernel."""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from .backend import register
from .band.simd_cpu import _transpose
from .cpu import threads
from .cpu.entries import FLAG, INT, Entry, array, run_blocks
from .cpu.jit import jit
from .cpu.specialise import template, variants


NOT_FINITE_AB, NOT_FINITE_B = -1, -2  # info's codes, with ``check``, for NaN or inf in a system's ab or b
# The bytes of a group's lane vector: two AVX-512 registers (four AVX2 ones), two independent chains of
# the same operations, so that each step's latency (the pivot's division, the substitutions' chains) is
# half hidden; one register a group is slower, four no faster.
_BYTES = 128


class _Lanes(types.Type):
    """<S x T>: one value of each of S systems, S = _BYTES / T's size."""
    def __init__(self, dtype):
        self.dtype, self.count = dtype, _BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"lanes({dtype})")


@register_model(_Lanes)
class _LanesModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = ir.DoubleType() if fe_type.dtype == types.float64 else ir.FloatType()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.count))


def _flat(a):
    return isinstance(a, types.Array) and a.dtype in (types.float32, types.float64) and a.ndim == 1 \
        and a.layout == "C"


def _pointer(context, builder, aty, a, p, lanes):
    """IR: the address of a[p] as a pointer to lanes."""
    data = context.make_array(aty)(context, builder, a).data
    return builder.bitcast(builder.gep(data, [p]), context.get_value_type(lanes).as_pointer())


@intrinsic
def _ld(typingctx, a, p):
    """a[p:p + S] as lanes; a is a flat float array."""
    if not (_flat(a) and isinstance(p, types.Integer)):
        return None
    lanes = _Lanes(a.dtype)

    def codegen(context, builder, sig, args):
        return builder.load(_pointer(context, builder, sig.args[0], args[0], args[1], lanes),
                            align=a.dtype.bitwidth // 8)
    return lanes(a, p), codegen


@intrinsic
def _st(typingctx, a, p, v):
    """a[p:p + S] = v."""
    if not (_flat(a) and isinstance(p, types.Integer) and v == _Lanes(a.dtype)):
        return None

    def codegen(context, builder, sig, args):
        builder.store(args[2], _pointer(context, builder, sig.args[0], args[0], args[1], v),
                      align=a.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(a, p, v), codegen


@intrinsic
def _splat(typingctx, a, x):
    """Lanes of the flat array a's dtype, every one x."""
    if not (_flat(a) and isinstance(x, (types.Integer, types.Float))):
        return None
    lanes = _Lanes(a.dtype)

    def codegen(context, builder, sig, args):
        vt = context.get_value_type(lanes)
        one = builder.insert_element(ir.Constant(vt, ir.Undefined), context.cast(builder, args[1], sig.args[1],
                                     lanes.dtype), ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), lanes.count), [0] * lanes.count))
    return lanes(a, x), codegen


@intrinsic
def _transposed(typingctx, w, q, qs, a, p, stride):
    """w[q + t * qs : ... + S] = lanes s: a[p + s * stride + t], t = 0 .. S - 1: an S x S tile of S systems'
    rows turned into S lane vectors (one contiguous load a system, then shuffles); flat arrays of one
    dtype."""
    if not (_flat(w) and _flat(a) and w.dtype == a.dtype and all(isinstance(i, types.Integer)
                                                                  for i in (q, qs, p, stride))):
        return None
    lanes = _Lanes(a.dtype)

    def codegen(context, builder, sig, args):
        q, qs, p, stride = (context.cast(builder, args[i], sig.args[i], types.int64) for i in (1, 2, 4, 5))
        i64 = ir.IntType(64)
        rows = [builder.load(_pointer(context, builder, sig.args[3], args[3],
                                      builder.add(p, builder.mul(stride, ir.Constant(i64, s))), lanes),
                             align=a.dtype.bitwidth // 8) for s in range(lanes.count)]
        for t, column in enumerate(_transpose(builder, rows)):
            builder.store(column, _pointer(context, builder, sig.args[0], args[0],
                                           builder.add(q, builder.mul(qs, ir.Constant(i64, t))), lanes),
                          align=a.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(w, q, qs, a, p, stride), codegen


@jit(error_model="numpy", inline="always")
def _stage(w, q, qs, a, p, stride, m, back):
    """w[q + i * qs + s] = a[p + s * stride + i] for i < m, s < S: the values i of S systems (system s's
    from a[p + s * stride] on) as lane vectors, or with ``back`` the other way, by S x S tiles
    (:func:`_transposed`) and one by one past the last whole tile; flat arrays of one dtype."""
    S = _BYTES // w.itemsize
    tiled = m - m % S
    for i in range(0, tiled, S):
        if back:
            _transposed(a, p + i, stride, w, q + i * qs, qs)
        else:
            _transposed(w, q + i * qs, qs, a, p + i, stride)
    for i in range(tiled, m):
        for s in range(S):
            if back:
                a[p + s * stride + i] = w[q + i * qs + s]
            else:
                w[q + i * qs + s] = a[p + s * stride + i]


@intrinsic
def _any_zero(typingctx, x):
    """Whether some lane of x is exactly zero."""
    if not isinstance(x, _Lanes):
        return None

    def codegen(context, builder, sig, args):
        zero = ir.Constant(args[0].type, [0.0] * x.count)
        mask = builder.bitcast(builder.fcmp_ordered("==", args[0], zero), ir.IntType(x.count))
        return builder.icmp_unsigned("!=", mask, ir.Constant(ir.IntType(x.count), 0))
    return types.boolean(x), codegen


def _lanewise(name, build, doc):
    """An intrinsic of (up to four) lanes of one type to lanes, built by ``build(builder, *values)``."""
    def typed(xs):
        return isinstance(xs[0], _Lanes) and all(x == xs[0] for x in xs)

    def codegen(context, builder, sig, args):
        return build(builder, *args)

    arity = build.__code__.co_argcount - 1
    if arity == 1:
        def op(typingctx, x):
            return (x(x), codegen) if typed((x,)) else None
    elif arity == 2:
        def op(typingctx, x, y):
            return (x(x, y), codegen) if typed((x, y)) else None
    else:
        def op(typingctx, x, y, p, q):
            return (x(x, y, p, q), codegen) if typed((x, y, p, q)) else None
    op.__name__, op.__qualname__, op.__doc__ = name, name, doc
    return intrinsic(op)


def _fabs(module, vt):
    """IR: LLVM's fabs on the vector type vt."""
    element = "f64" if vt.element == ir.DoubleType() else "f32"
    return cgutils.get_or_insert_function(module, ir.FunctionType(vt, [vt]), f"llvm.fabs.v{vt.count}{element}")


# The arithmetic as the scalar kernel's, operation for operation (no contraction into FMAs), so that a
# system's results do not depend on the path that solved it.
_add = _lanewise("_add", lambda b, x, y: b.fadd(x, y), "x + y")
_mul = _lanewise("_mul", lambda b, x, y: b.fmul(x, y), "x * y")
_div = _lanewise("_div", lambda b, x, y: b.fdiv(x, y), "x / y")
_sub = _lanewise("_sub", lambda b, x, y: b.fsub(x, y), "x - y")
_abs = _lanewise("_abs", lambda b, x: b.call(_fabs(b.module, x.type), [x]), "|x|")
_if_greater = _lanewise("_if_greater", lambda b, x, y, p, q: b.select(b.fcmp_ordered(">", x, y), p, q),
                        "x > y ? p : q")
_if_equal = _lanewise("_if_equal", lambda b, x, y, p, q: b.select(b.fcmp_ordered("==", x, y), p, q),
                      "x == y ? p : q")


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
                inverse = w.dtype.type(1.0) / w[kv, j]  # (in the dtype, as sgbsv and the lanes)
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


@jit(error_model="numpy", inline="always")
def _eliminate(w, steps, info, f0, j, below, right, kv, C, spill):
    """Step j of the factorisation of a group of S systems (:func:`_gbsv_lanes`' layout): the pivot of
    column j among its ``below`` rows under the diagonal, rows j and j + step interchanged in columns j ..
    j + ``right``, the multipliers and the rank-1 update; a zero pivot recorded in its system's info."""
    S = _BYTES // w.itemsize
    zero, one = _splat(w, 0.0), _splat(w, 1.0)
    p = j * C + kv * S  # the diagonal of column j
    best, step = _abs(_ld(w, p)), zero
    for r in range(1, below + 1):  # the first largest magnitude, as the scalar kernel
        v = _abs(_ld(w, p + r * S))
        step = _if_greater(v, best, _splat(w, r), step)
        best = _if_greater(v, best, v, best)
    _st(steps, j * S, step)
    o = p
    old = _ld(w, o)
    top = old
    for r in range(1, below + 1):
        top = _if_equal(step, _splat(w, r), _ld(w, o + r * S), top)
    _st(w, o, top)
    if _any_zero(top):  # a zero pivot: that lane's system is singular (its values are ignored)
        _st(steps, spill, top)
        for s in range(S):
            if steps[spill + s] == 0.0 and info[f0 + s] == 0:
                info[f0 + s] = j + 1
    inverse = _div(one, _if_equal(top, zero, one, top))
    for r in range(1, below + 1):
        _st(w, o + r * S, _mul(_if_equal(step, _splat(w, r), old, _ld(w, o + r * S)), inverse))
    for c in range(j + 1, j + right + 1):  # rows j and j + step interchanged, then updated
        o = c * C + (kv + j - c) * S
        old = _ld(w, o)
        top = old
        for r in range(1, below + 1):
            top = _if_equal(step, _splat(w, r), _ld(w, o + r * S), top)
        _st(w, o, top)
        for r in range(1, below + 1):
            swapped = _if_equal(step, _splat(w, r), old, _ld(w, o + r * S))
            _st(w, o + r * S, _sub(swapped, _mul(_ld(w, p + r * S), top)))


@jit(error_model="numpy", inline="always")
def _forward(w, x, steps, j, below, k, kv, C):
    """Column j of x <- L^-1 P x for a group: the interchange of step j, then the multipliers'."""
    S = _BYTES // w.itemsize
    step = _ld(steps, j * S)
    for c in range(k):
        q = (j * k + c) * S
        old = _ld(x, q)
        top = old
        for r in range(1, below + 1):
            top = _if_equal(step, _splat(w, r), _ld(x, q + r * k * S), top)
        _st(x, q, top)
        for r in range(1, below + 1):
            swapped = _if_equal(step, _splat(w, r), old, _ld(x, q + r * k * S))
            _st(x, q + r * k * S, _sub(swapped, _mul(_ld(w, j * C + (kv + r) * S), top)))


@jit(error_model="numpy", inline="always")
def _backward(w, x, j, above, k, kv, C):
    """Column j of x <- U^-1 x for a group: x_j divided by the pivot, then taken from the ``above`` rows
    over it."""
    S = _BYTES // w.itemsize
    d = _ld(w, j * C + kv * S)
    for c in range(k):
        q = (j * k + c) * S
        xj = _div(_ld(x, q), d)
        _st(x, q, xj)
        for i in range(j - above, j):
            qi = (i * k + c) * S
            _st(x, qi, _sub(_ld(x, qi), _mul(_ld(w, j * C + (kv + i - j) * S), xj)))


@template(error_model="numpy")
def _gbsv_lanes(ab, b, lanes, rhs, steps, work, piv, info, lower, upper, check, lo, hi):
    """:func:`_gbsv` for the systems [lo, hi), S at a time side by side, the rest by :func:`_gbsv`. The
    scratch, flat, holds a group's values lane innermost: ``lanes`` (n, 2 l + u + 1, S) their factors in
    gbtrf's layout (entry (i, j) at [j, l + u + i - j]), ``rhs`` (n, k, S) their right-hand sides,
    ``steps`` (n + 2, S) each column's pivot row less the column (as floats), and two rows of spilled lanes;
    ``work`` and ``piv`` :func:`_gbsv`'s. info as :func:`_gbsv`'s, for each system."""
    if _LOWER >= 0:  # a variant's l: the loops over the rows under a pivot have constant trip counts,
        lower = _LOWER  # which LLVM unrolls (a constant u as well gains nothing more)
    n, k = b.shape[1], b.shape[2]
    S = _BYTES // lanes.itemsize
    kv = lower + upper
    C = (kv + lower + 1) * S  # one column of a group's factor
    w, x, spill = lanes, rhs, n * S
    zero = _splat(w, 0.0)
    end = lo + (hi - lo) // S * S
    nk = n * k
    flat, bflat = ab.reshape(ab.size), b.reshape(b.size)
    for f0 in range(lo, end, S):
        for r in range(kv + 1):
            _stage(w, (lower + r) * S, C, flat, (f0 * (kv + 1) + r) * n, (kv + 1) * n, n, False)
        for j in range(n):  # (the fill rows above the band start at zero)
            for r in range(lower):
                _st(w, j * C + r * S, zero)
        _stage(x, 0, S, bflat, f0 * nk, nk, nk, False)
        for s in range(S):
            info[f0 + s] = 0
        if check:  # a sum of v * 0 is NaN exactly where some v is NaN or inf
            scan = zero
            for j in range(n):
                for r in range(kv + 1):
                    scan = _add(scan, _mul(_ld(w, j * C + (lower + r) * S), zero))
            _st(steps, spill, scan)
            for q in range(0, nk * S, S):
                scan = _add(scan, _mul(_ld(x, q), zero))
            _st(steps, spill + S, scan)
            for s in range(S):
                if steps[spill + s] != steps[spill + s]:
                    info[f0 + s] = NOT_FINITE_AB
                elif steps[spill + S + s] != steps[spill + S + s]:
                    info[f0 + s] = NOT_FINITE_B
        # the columns whose loops run the full bands, then the last ones (as LAPACK's)
        main = max(0, n - kv)
        for j in range(main):
            _eliminate(w, steps, info, f0, j, lower, kv, kv, C, spill)
        for j in range(main, n):
            _eliminate(w, steps, info, f0, j, min(lower, n - 1 - j), n - 1 - j, kv, C, spill)
        for j in range(main):  # x <- L^-1 P x
            _forward(w, x, steps, j, lower, k, kv, C)
        for j in range(main, n):
            _forward(w, x, steps, j, min(lower, n - 1 - j), k, kv, C)
        for j in range(n - 1, kv - 1, -1):  # x <- U^-1 x
            _backward(w, x, j, kv, k, kv, C)
        for j in range(min(kv, n) - 1, -1, -1):
            _backward(w, x, j, j, k, kv, C)
        solved = 0
        for s in range(S):
            solved += info[f0 + s] == 0
        if solved == S:
            _stage(x, 0, S, bflat, f0 * nk, nk, nk, True)
        else:  # a singular or non-finite system's b stays as it was
            for s in range(S):
                if info[f0 + s] == 0:
                    for m in range(nk):
                        bflat[(f0 + s) * nk + m] = x[m * S + s]
    if end < hi:
        _gbsv(ab, b, work, piv, info, lower, upper, check, end, hi)


# The l compiled as a constant up to this many sub-diagonals (a variant compiles in seconds, once per l
# and dtype); wider bands, whose loops are long enough, take the variant that reads l at run time.
_UNROLLED = 4
_ENTRIES = {}


def _entry(lower):
    """The C entry of :func:`_gbsv_lanes` for l = ``lower``, compiled (or loaded from the cache) the first
    time it is met in this process."""
    key = lower if lower <= _UNROLLED else -1
    entry = _ENTRIES.get(key)
    if entry is None:
        kernel, = variants((_gbsv_lanes,), f"_l{key}" if key >= 0 else "_any", _LOWER=key)
        entry = _ENTRIES.setdefault(key, Entry(
            kernel, ab=array("f", "r", "n"), b=array("f", "n", "k"), lanes=array("m"), rhs=array("q"),
            steps=array("p"), work=array("w", "n"), piv=array("n", dtype=np.int64), info=array("f", dtype=np.int64),
            lower=INT, upper=INT, check=FLAG, lo=INT, hi=INT))
    return entry


_GBSV_SECONDS = 5e-10  # a column's elimination and solve per band entry, in lanes, on one thread (order)


@register("banded_lu_solve")
def banded_lu_solve(ab, b, lower, upper, check):
    """Overwrites ``b`` (F, n, k) with A_f^-1 b_f for the F band matrices ``ab`` (F, l + u + 1, n), all
    C-contiguous of one float dtype; returns ``info`` (F,) int64 (:func:`_gbsv`'s). Blocks of whole groups
    of S systems run on gvae's threads, the last block with the systems left over."""
    count, n, k = b.shape
    S = _BYTES // ab.dtype.itemsize
    rows = 2 * lower + upper + 1
    per_system = (lower + 1) * (lower + upper + 1 + k) * n
    groups = threads.row_blocks(-(-count // S), S * per_system, _GBSV_SECONDS)
    parts = [(lo * S, min(hi * S, count)) for lo, hi in groups]
    scratch = lambda *size: np.empty((len(parts),) + size, ab.dtype)  # noqa: E731  (one of each a block)
    lanes, rhs, steps, work = scratch(n * rows * S), scratch(n * k * S), scratch((n + 2) * S), scratch(rows, n)
    piv = np.empty((len(parts), n), np.int64)
    info = np.empty(count, np.int64)
    run_blocks(_entry(lower), lambda part, lo, hi: (ab, b, lanes[part], rhs[part], steps[part], work[part],
                                                    piv[part], info, lower, upper, bool(check), lo, hi), parts)
    return info
