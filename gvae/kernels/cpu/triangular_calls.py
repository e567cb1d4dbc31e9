"""Calls, from Numba kernels, of two triangular routines of the OpenBLAS that NumPy loaded, at the addresses
:func:`.blas.triangular_addresses` finds (ILP64: sizes int64; float64): LAPACKE's ``dtrtri``, the inverse of a
triangular matrix in place, and CBLAS's ``dtrmm``, a triangular matrix times a full one in place. A kernel
makes them without the GIL, so gvae's threads run them side by side (:mod:`..band.dense_inverse_cpu`).

Matrices are passed as addresses (int64, ``a.ctypes.data``) of C-contiguous float64 arrays."""
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

# CBLAS's and LAPACKE's enums
ROW_MAJOR, COL_MAJOR = 101, 102
LEFT, RIGHT = 141, 142
UPPER, LOWER = 121, 122
NO_TRANS, TRANS = 111, 112
NON_UNIT = 131


@intrinsic
def call_trtri(typingctx, address, layout, uplo, n, a, lda):
    """``LAPACKE_dtrtri(layout, uplo, 'N', n, a, lda)`` through the function at ``address``: ``uplo`` the
    character code (``ord('U')`` or ``ord('L')``); returns LAPACK's info (int64: 0, or i > 0 where the i-th
    diagonal entry is zero and the matrix was left unfinished)."""
    def codegen(context, builder, signature, args):
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        pointer = ir.DoubleType().as_pointer()
        fnty = ir.FunctionType(i64, [i32, i8, i8, i64, pointer, i64])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fn, [builder.trunc(args[1], i32), builder.trunc(args[2], i8), ir.Constant(i8, ord("N")),
                                 args[3], builder.inttoptr(args[4], pointer), args[5]])
    return types.int64(address, layout, uplo, n, a, lda), codegen


@intrinsic
def call_trmm(typingctx, address, layout, side, uplo, trans, m, n, alpha, a, lda, b, ldb):
    """``cblas_dtrmm(layout, side, uplo, trans, NonUnit, m, n, alpha, a, lda, b, ldb)`` through the function at
    ``address``: b (m x n) := alpha op(a) b (``side`` LEFT) or alpha b op(a) (RIGHT), a triangular."""
    def codegen(context, builder, signature, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        real = ir.DoubleType()
        pointer = real.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i32, i32, i64, i64, real, pointer, i64, pointer, i64])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        enums = [builder.trunc(v, i32) for v in args[1:5]]
        builder.call(fn, enums + [ir.Constant(i32, NON_UNIT), args[5], args[6], args[7],
                                  builder.inttoptr(args[8], pointer), args[9], builder.inttoptr(args[10], pointer),
                                  args[11]])
        return context.get_dummy_value()
    return types.void(address, layout, side, uplo, trans, m, n, alpha, a, lda, b, ldb), codegen
