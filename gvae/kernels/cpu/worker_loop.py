"""The native loop a gvae worker thread waits in: spinning on a board (an int64 array) without the GIL,
and running the BLAS products and C entries posted to it without returning to Python.

Handing a call to a thread that sleeps on a queue costs a futex wake-up each way and a turn of the GIL,
and a training step hands over about 14 times. Here the worker spins (for ``rounds`` turns of an atomic
load and a pause) and sees a posted task at once; a product it runs by calling the BLAS's
``cblas_?gemm`` (or, for a matrix times a vector, ``cblas_?gemv``) at the address posted with it, so it
never takes the GIL, and the caller, spinning on the same board, sees it done at once. A Numba kernel
compiled as a C entry (:mod:`entries`) it calls the same way, at the address posted with it. Any other
task goes back to Python (:mod:`threads` runs it there and reports it done on the next entry, after the GIL
is released again).

Board layout (int64 slots; the two counters on their own cache lines):
``POSTED`` the caller's count of tasks posted, ``DONE`` the worker's count of tasks finished, ``KIND``
what the posted task is (:data:`GEMM32`, :data:`GEMM64`, :data:`GEMV32`, :data:`GEMV64`, :data:`CALL`,
:data:`NOOP`, :data:`PYTHON`, :data:`QUIT`), ``ARGS`` onwards a product's ``cblas_?gemm`` address and
arguments (row-major; transa, transb, M, N, K, a, lda, b, ldb, c, ldc; alpha 1, beta 0), a matrix-vector
product's ``cblas_?gemv`` address and arguments (row-major; trans, M, N, a, lda, x, incx, y, incy; alpha 1,
beta 0), or a C entry's address and then the int64 arguments it reads; ``HOLD``, on a line of its own,
nonzero while a recorded program (:mod:`programs`) posts to the worker from native code: the worker then
spins without counting its idle turns, since only Python could wake it from its sleep.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .jit import jit
from .numba_compat import declared_function, item_pointer

POSTED, DONE, KIND, ARGS, HOLD, SIZE = 0, 8, 16, 17, 48, 56
GEMM32, GEMM64, PYTHON, QUIT, CALL, NOOP, GEMV32, GEMV64 = 1, 2, 3, 4, 5, 6, 7, 8
ROW_MAJOR = 101  # CBLAS_ORDER


def new_board():
    """A zeroed board, 64-byte aligned (each counter alone on its cache line)."""
    raw = np.zeros(SIZE + 8, np.int64)
    start = (-raw.ctypes.data // 8) % 8
    return raw[start:start + SIZE]


@intrinsic
def load_acquire(typingctx, board, idx):
    """board[idx], an atomic load with acquire ordering (a plain load could be hoisted out of a loop)."""
    def codegen(context, builder, signature, args):
        ptr = item_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)
    return board.dtype(board, idx), codegen


@intrinsic
def store_release(typingctx, board, idx, value):
    """board[idx] = value, an atomic store with release ordering (what was written before is seen first)."""
    def codegen(context, builder, signature, args):
        ptr = item_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()
    return types.void(board, idx, value), codegen


@intrinsic
def pause(typingctx):
    """The x86 spin-wait hint (lets a sibling hyperthread run, saves power); nothing elsewhere."""
    def codegen(context, builder, signature, args):
        if builder.module.triple.startswith(("x86_64", "i686", "i386")):
            hint = declared_function(builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(hint, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _call_gemm(typingctx, address, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm(RowMajor, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) through the
    function at ``address``: enums int32, sizes int64 (an ILP64 BLAS), alpha and beta in the product's
    dtype, the three matrices as addresses (int64)."""
    def codegen(context, builder, signature, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        real = args[6].type
        pointer = real.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, pointer, i64, pointer, i64,
                                               real, pointer, i64])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        order = ir.Constant(i32, ROW_MAJOR)
        cast = [builder.trunc(args[1], i32), builder.trunc(args[2], i32)]
        builder.call(fn, [order] + cast + list(args[3:7]) + [builder.inttoptr(args[7], pointer), args[8],
                                                             builder.inttoptr(args[9], pointer), args[10],
                                                             args[11], builder.inttoptr(args[12], pointer),
                                                             args[13]])
        return context.get_dummy_value()
    sig = types.void(address, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    return sig, codegen


@intrinsic
def _call_gemv(typingctx, address, trans, m, n, alpha, a, lda, x, incx, beta, y, incy):
    """cblas_?gemv(RowMajor, trans, m, n, alpha, a, lda, x, incx, beta, y, incy) through the function at
    ``address``: the enums int32, sizes and increments int64 (an ILP64 BLAS), alpha and beta in the
    product's dtype, the matrix and the vectors as addresses (int64)."""
    def codegen(context, builder, signature, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        real = args[4].type
        pointer = real.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i64, i64, real, pointer, i64, pointer, i64, real,
                                               pointer, i64])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(fn, [ir.Constant(i32, ROW_MAJOR), builder.trunc(args[1], i32), args[2], args[3], args[4],
                          builder.inttoptr(args[5], pointer), args[6], builder.inttoptr(args[7], pointer), args[8],
                          args[9], builder.inttoptr(args[10], pointer), args[11]])
        return context.get_dummy_value()
    return types.void(address, trans, m, n, alpha, a, lda, x, incx, beta, y, incy), codegen


@intrinsic
def _call_entry(typingctx, address, board, idx):
    """The C entry ``void entry(int64 *args)`` at ``address``, called with the address of board[idx]."""
    def codegen(context, builder, signature, args):
        slots = ir.IntType(64).as_pointer()
        fn = builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), [slots]).as_pointer())
        builder.call(fn, [item_pointer(context, builder, signature.args[1], args[1], args[2])])
        return context.get_dummy_value()
    return types.void(address, board, idx), codegen


@jit
def perform(kind, slots, at):
    """Run the native task of ``kind`` whose address and arguments are ``slots[at:]`` (a board's, or a
    recorded program's row): a product (of two matrices, or of a matrix and a vector), a C entry, or
    nothing (:data:`NOOP`); False for any other kind."""
    if kind == CALL:
        _call_entry(slots[at], slots, at + 1)
    elif kind == GEMM32:
        _call_gemm(slots[at], slots[at + 1], slots[at + 2], slots[at + 3], slots[at + 4], slots[at + 5],
                   np.float32(1.0), slots[at + 6], slots[at + 7], slots[at + 8], slots[at + 9], np.float32(0.0),
                   slots[at + 10], slots[at + 11])
    elif kind == GEMM64:
        _call_gemm(slots[at], slots[at + 1], slots[at + 2], slots[at + 3], slots[at + 4], slots[at + 5], 1.0,
                   slots[at + 6], slots[at + 7], slots[at + 8], slots[at + 9], 0.0, slots[at + 10], slots[at + 11])
    elif kind == GEMV32:
        _call_gemv(slots[at], slots[at + 1], slots[at + 2], slots[at + 3], np.float32(1.0), slots[at + 4],
                   slots[at + 5], slots[at + 6], slots[at + 7], np.float32(0.0), slots[at + 8], slots[at + 9])
    elif kind == GEMV64:
        _call_gemv(slots[at], slots[at + 1], slots[at + 2], slots[at + 3], 1.0, slots[at + 4], slots[at + 5],
                   slots[at + 6], slots[at + 7], 0.0, slots[at + 8], slots[at + 9])
    elif kind != NOOP:
        return False
    return True


@jit
def serve(board, rounds, finished):
    """A worker's wait: first report task ``finished`` done (0: none), then run every product and C entry
    posted, and return the KIND of the first task that needs Python (:data:`PYTHON`, :data:`QUIT`), or 0 once
    ``rounds`` turns have passed with nothing posted and nothing holding it (``HOLD``)."""
    if finished:
        store_release(board, DONE, finished)
    seen = board[DONE]
    idle = 0
    while idle < rounds:
        posted = load_acquire(board, POSTED)
        if posted == seen:
            if load_acquire(board, HOLD) == 0:
                idle += 1
            pause()
            continue
        kind = board[KIND]
        if not perform(kind, board, ARGS):
            return kind
        seen = posted
        store_release(board, DONE, posted)
        idle = 0
    return 0


@jit
def publish(board, count):
    """Post task ``count``: what was written on the board before is seen by the worker first."""
    store_release(board, POSTED, count)


@jit
def wait_done(board, count, rounds):
    """Spin (at most ``rounds`` turns) until the worker has finished task ``count``; whether it has."""
    for _ in range(rounds):
        if load_acquire(board, DONE) == count:
            return True
        pause()
    return load_acquire(board, DONE) == count
