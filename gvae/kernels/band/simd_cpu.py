"""A small vector language for Numba on llvmlite: a block of ``lanes`` float64 values as one LLVM vector
value, with loads, stores, arithmetic and the staging transposes (used by the exact trace).

:func:`simd` builds the language for one width, to be bound into templates (:mod:`..cpu.specialise`) together
with ``_TB = lanes``: the same kernel source then compiles to 8-lane blocks (two AVX2 registers per
operation) or to 1-lane ones (plain scalar code, the block of one factor)."""
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, models, register_model


class _Block(types.Type):
    def __init__(self, lanes):
        self.lanes = lanes
        super().__init__(name=f"f64x{lanes}")


@register_model(_Block)
class _BlockModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(ir.DoubleType(), fe_type.lanes))


_VFLAGS = ("contract",)


def _flat_f64(a):
    return isinstance(a, types.Array) and a.dtype == types.float64 and a.ndim == 1 and a.layout == "C"


def _transpose(builder, rows):
    """IR: the _TB = len(rows) vectors rows[b] (each _TB long) transposed: cols[j][b] = rows[b][j]."""
    i32 = ir.IntType(32)
    _TB = len(rows)

    def shuf(x, y, mask):
        return builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(i32, len(mask)), mask))
    if _TB == 8 and rows[0].type.element == ir.FloatType():  # AVX's 8 x 8: unpck, shufps, perm2f128
        lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
        t = [shuf(rows[2 * m], rows[2 * m + 1], h) for m in range(4) for h in (lo, hi)]
        lo, hi = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        u = [shuf(t[4 * g + s], t[4 * g + s + 2], h) for g in range(2) for s in range(2) for h in (lo, hi)]
        lo, hi = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
        return [shuf(u[j % 4], u[j % 4 + 4], lo if j < 4 else hi) for j in range(_TB)]
    # in general: merge pairs of interleaved groups until one vector holds element j of every row at
    # j * _TB + b, then cut it into the columns
    width = 1
    while len(rows) > 1:
        merged = []
        for m in range(0, len(rows), 2):
            n = rows[m].type.count
            mask = []
            for j in range(_TB):
                mask += [j * width + t for t in range(width)] + [n + j * width + t for t in range(width)]
            merged.append(shuf(rows[m], rows[m + 1], mask))
        rows = merged
        width *= 2
    return [shuf(rows[0], ir.Constant(rows[0].type, ir.Undefined), list(range(j * _TB, (j + 1) * _TB)))
            for j in range(_TB)]


def _f64_and_ints(S, a, ints):
    return (_flat_f64(S) and isinstance(a, types.Array) and a.dtype in (types.float32, types.float64)
            and a.ndim == 1 and a.layout == "C" and all(isinstance(t, types.Integer) for t in ints))


def simd(lanes):
    """The vector language for blocks of ``lanes`` float64 lanes: a dict of intrinsics by name (``_vld``,
    ``_vst``, ...), to bind into templates with ``_TB = lanes``. Each intrinsic accepts only blocks of
    its own width."""
    _TB = lanes
    _block = _Block(lanes)

    def _block_ptr(context, builder, aty, ary, p):
        data = context.make_array(aty)(context, builder, ary).data
        return builder.bitcast(builder.gep(data, [p]), ir.PointerType(ir.VectorType(ir.DoubleType(), _TB)))

    @intrinsic
    def _vld(typingctx, a, p):
        """a[p:p + _TB] as a block vector; a is a flat float64 array."""
        if not (_flat_f64(a) and isinstance(p, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            return builder.load(_block_ptr(context, builder, sig.args[0], args[0], args[1]), align=8)
        return _block(a, p), codegen

    @intrinsic
    def _vst(typingctx, a, p, v):
        """a[p:p + _TB] = v."""
        if not (_flat_f64(a) and isinstance(p, types.Integer) and v == _block):
            return None

        def codegen(context, builder, sig, args):
            builder.store(args[2], _block_ptr(context, builder, sig.args[0], args[0], args[1]), align=8)
            return context.get_dummy_value()
        return types.none(a, p, v), codegen

    @intrinsic
    def _vsplat(typingctx, x):
        """A block vector with every lane x."""
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, sig, args):
            v = context.cast(builder, args[0], sig.args[0], types.float64)
            vt = ir.VectorType(ir.DoubleType(), _TB)
            one = builder.insert_element(ir.Constant(vt, ir.Undefined), v, ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined),
                                          ir.Constant(ir.VectorType(ir.IntType(32), _TB), [0] * _TB))
        return _block(x), codegen

    @intrinsic
    def _repeat(typingctx, x, count):
        """A tuple of ``count`` (a literal) copies of x (a block vector or an integer): the per-term values of
        an unrolled loop, which LLVM keeps in registers."""
        if not ((x == _block or isinstance(x, types.Integer)) and isinstance(count, types.IntegerLiteral)):
            return None
        m = count.literal_value
        ty = types.unliteral(x)

        def codegen(context, builder, sig, args):
            v = context.cast(builder, args[0], sig.args[0], ty)
            return context.make_tuple(builder, sig.return_type, [v] * m)
        return types.UniTuple(ty, m)(x, count), codegen

    @intrinsic
    def _vadd(typingctx, x, y):
        if not (x == _block and y == _block):
            return None

        def codegen(context, builder, sig, args):
            return builder.fadd(args[0], args[1], flags=_VFLAGS)
        return _block(x, y), codegen

    @intrinsic
    def _vsub(typingctx, x, y):
        if not (x == _block and y == _block):
            return None

        def codegen(context, builder, sig, args):
            return builder.fsub(args[0], args[1], flags=_VFLAGS)
        return _block(x, y), codegen

    @intrinsic
    def _vmul(typingctx, x, y):
        if not (x == _block and y == _block):
            return None

        def codegen(context, builder, sig, args):
            return builder.fmul(args[0], args[1], flags=_VFLAGS)
        return _block(x, y), codegen

    @intrinsic
    def _vdiv(typingctx, x, y):
        if not (x == _block and y == _block):
            return None

        def codegen(context, builder, sig, args):
            return builder.fdiv(args[0], args[1])
        return _block(x, y), codegen

    @intrinsic
    def _vfma(typingctx, x, y, z):
        """x * y + z (fused)."""
        if not (x == _block and y == _block and z == _block):
            return None

        def codegen(context, builder, sig, args):
            return builder.fadd(builder.fmul(args[0], args[1], flags=_VFLAGS), args[2], flags=_VFLAGS)
        return _block(x, y, z), codegen

    @intrinsic
    def _vfnma(typingctx, x, y, z):
        """z - x * y (fused)."""
        if not (x == _block and y == _block and z == _block):
            return None

        def codegen(context, builder, sig, args):
            return builder.fsub(args[2], builder.fmul(args[0], args[1], flags=_VFLAGS), flags=_VFLAGS)
        return _block(x, y, z), codegen

    @intrinsic
    def _vgather(typingctx, a, f0, F, stride, p):
        """Lane b: a[min(f0 + b, F - 1) * stride + p] as float64 (a: flat float32 or float64 array); the
        staging loads of a block, past the batch repeating its last factor."""
        if not (isinstance(a, types.Array) and a.dtype in (types.float32, types.float64) and a.ndim == 1
                and a.layout == "C" and all(isinstance(t, types.Integer) for t in (f0, F, stride, p))):
            return None

        def codegen(context, builder, sig, args):
            data = context.make_array(sig.args[0])(context, builder, args[0]).data
            i64 = ir.IntType(64)
            f0v, Fv, sv, pv = (context.cast(builder, v, t, types.int64) for v, t in zip(args[1:], sig.args[1:]))
            last = builder.sub(Fv, ir.Constant(i64, 1))
            vec = ir.Constant(ir.VectorType(ir.DoubleType(), _TB), ir.Undefined)
            for b in range(_TB):
                f = builder.add(f0v, ir.Constant(i64, b))
                f = builder.select(builder.icmp_signed("<", f, last), f, last)
                x = builder.load(builder.gep(data, [builder.add(builder.mul(f, sv), pv)]))
                if sig.args[0].dtype == types.float32:
                    x = builder.fpext(x, ir.DoubleType())
                vec = builder.insert_element(vec, x, ir.Constant(ir.IntType(32), b))
            return vec
        return _block(a, f0, F, stride, p), codegen

    @intrinsic
    def _vstage(typingctx, S, q, qs, a, f0, F, stride, p):
        """S[q + j * qs : ... + _TB] = lanes b: a[min(f0 + b, F - 1) * stride + p + j] as float64, for
        j = 0 .. _TB - 1: a _TB x _TB tile of the factors transposed (one contiguous load per factor, then
        shuffles); a: flat float32 or float64 array, S: flat float64 array."""
        if not _f64_and_ints(S, a, (q, qs, f0, F, stride, p)):
            return None

        def codegen(context, builder, sig, args):
            i64 = ir.IntType(64)
            sdata = context.make_array(sig.args[0])(context, builder, args[0]).data
            adata = context.make_array(sig.args[3])(context, builder, args[3]).data
            qv, qsv, f0v, Fv, sv, pv = (context.cast(builder, args[j], sig.args[j], types.int64)
                                        for j in (1, 2, 4, 5, 6, 7))
            vty = ir.VectorType(adata.type.pointee, _TB)
            dty = ir.VectorType(ir.DoubleType(), _TB)
            last = builder.sub(Fv, ir.Constant(i64, 1))
            rows = []
            for b in range(_TB):
                f = builder.add(f0v, ir.Constant(i64, b))
                f = builder.select(builder.icmp_signed("<", f, last), f, last)
                ptr = builder.gep(adata, [builder.add(builder.mul(f, sv), pv)])
                rows.append(builder.load(builder.bitcast(ptr, ir.PointerType(vty)), align=4))
            for j, col in enumerate(_transpose(builder, rows)):
                if vty != dty:
                    col = builder.fpext(col, dty)
                dst = builder.gep(sdata, [builder.add(qv, builder.mul(qsv, ir.Constant(i64, j)))])
                builder.store(col, builder.bitcast(dst, ir.PointerType(dty)), align=8)
            return context.get_dummy_value()
        return types.none(S, q, qs, a, f0, F, stride, p), codegen

    @intrinsic
    def _vunstage(typingctx, G, q, qs, a, f0, stride, p):
        """The inverse of _vstage for a full block: a[(f0 + b) * stride + p + j] = lane b of
        G[q + j * qs : ... + _TB], j = 0 .. _TB - 1, rounded to a's dtype."""
        if not _f64_and_ints(G, a, (q, qs, f0, stride, p)):
            return None

        def codegen(context, builder, sig, args):
            i64 = ir.IntType(64)
            gdata = context.make_array(sig.args[0])(context, builder, args[0]).data
            adata = context.make_array(sig.args[3])(context, builder, args[3]).data
            qv, qsv, f0v, sv, pv = (context.cast(builder, args[j], sig.args[j], types.int64)
                                    for j in (1, 2, 4, 5, 6))
            vty = ir.VectorType(adata.type.pointee, _TB)
            dty = ir.VectorType(ir.DoubleType(), _TB)
            cols = []
            for j in range(_TB):
                src = builder.gep(gdata, [builder.add(qv, builder.mul(qsv, ir.Constant(i64, j)))])
                col = builder.load(builder.bitcast(src, ir.PointerType(dty)), align=8)
                cols.append(col if vty == dty else builder.fptrunc(col, vty))
            for b, row in enumerate(_transpose(builder, cols)):
                f = builder.add(f0v, ir.Constant(i64, b))
                dst = builder.gep(adata, [builder.add(builder.mul(f, sv), pv)])
                builder.store(row, builder.bitcast(dst, ir.PointerType(vty)), align=4)
            return context.get_dummy_value()
        return types.none(G, q, qs, a, f0, stride, p), codegen

    return dict(_vld=_vld, _vst=_vst, _vsplat=_vsplat, _repeat=_repeat, _vadd=_vadd, _vsub=_vsub,
                _vmul=_vmul, _vdiv=_vdiv, _vfma=_vfma, _vfnma=_vfnma, _vgather=_vgather, _vstage=_vstage,
                _vunstage=_vunstage)
