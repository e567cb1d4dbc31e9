"""C entries through which a gvae worker runs a Numba kernel without Python (:mod:`worker_cpu`).

A worker handed a Python task must take the GIL to run it: in 2-thread training steps on a 2-core Zen 5
KVM guest the caller then waited 17-104 us (medians of runs) for each such block, and the process made
3.7-3.9 voluntary context switches a step (README, Results), where a product handed over as a BLAS call
waits about 2 us. An
*entry* is a kernel compiled as a C function ``void entry(int64 *args)`` (a Numba ``cfunc``) that reads
its arguments from the worker's board: array addresses, sizes, and floats as their 64-bit patterns
(:func:`bits`, :func:`float_of`). A task posts the entry's address and its arguments (kind
``worker_cpu.CALL``) and the worker calls it from its native loop. An entry must not raise (nothing
would see the exception): its kernel may not allocate or fail.

A kernel with an entry is a jitted ``kernel(args, dtype)`` that builds its arrays from the arguments
(:func:`array_at`) and calls the kernel the caller's thread calls; args[0] is the arrays' itemsize, which
picks the dtype. Its entry is compiled the first time it is asked for in a process (:func:`entry`) and
cached on disk as gvae's other kernels are (:mod:`jit`).
"""
import struct
import threading
import types as pytypes

import numpy as np

from llvmlite import ir
from numba import carray, types
from numba.extending import intrinsic

from . import threads, worker_cpu
from .jit import compile_entry, jit

__all__ = ["Call", "usable", "run_blocks", "entry", "row_address", "bits", "float_of", "array_at"]

_SIGNATURE = types.void(types.CPointer(types.int64))
_ENTRIES = {}  # kernel -> its entry's compiled CFunc (holding the machine code that its address points at)
_COMPILING = threading.Lock()


def _typed(args):
    """The C entry of the kernel bound as ``_AT``: ``_AT(args, dtype)`` for the dtype whose itemsize is
    args[0] (4: float32, else float64)."""
    if args[0] == 4:
        _AT(args, np.float32)  # noqa: F821 (bound per entry by :func:`entry`)
    else:
        _AT(args, np.float64)  # noqa: F821


def entry(kernel):
    """The address of the C entry of ``kernel(args, dtype)`` (a jitted function of the int64 arguments, the
    first of them the arrays' itemsize), compiled or loaded from the cache the first time it is asked for in
    this process, and kept for the life of the process (a worker may be about to call it). The entry is
    filed under the kernel's own source file, so that its cache goes stale with that file."""
    compiled = _ENTRIES.get(kernel)
    if compiled is None:
        with _COMPILING:  # one compilation per entry, whichever threads ask at once
            compiled = _ENTRIES.get(kernel)
            if compiled is None:
                home = kernel.py_func
                code = _typed.__code__.replace(co_filename=home.__code__.co_filename)
                fn = pytypes.FunctionType(code, dict(_typed.__globals__, _AT=kernel), home.__name__ + "_entry")
                fn.__qualname__ = home.__qualname__ + "_entry"
                compiled = _ENTRIES[kernel] = compile_entry(fn, _SIGNATURE, error_model="numpy")
    return compiled.address


class Call:
    """A task of :func:`threads.run`: the caller's thread runs it by calling ``run()``, a worker through the C
    entry of ``kernel`` (:func:`entry`) with the int64 arguments that ``args()`` gives (the same kernel on
    the same data; asked for only when the task is handed to a worker)."""
    __slots__ = ("run", "kernel", "args")

    def __init__(self, run, kernel, args):
        self.run, self.kernel, self.args = run, kernel, args

    def __call__(self):
        self.run()

    @property
    def native(self):
        args = self.args()
        if 1 + len(args) > worker_cpu.SIZE - worker_cpu.ARGS:
            raise ValueError(f"a C entry takes at most {worker_cpu.SIZE - worker_cpu.ARGS - 1} arguments on the "
                             f"board, got {len(args)}")
        return worker_cpu.CALL, (entry(self.kernel), *args)


def usable(*arrays):
    """Whether an entry may be handed ``arrays`` by address: each C-contiguous and aligned, as
    :func:`array_at` types them."""
    return all(a.flags.c_contiguous and a.flags.aligned for a in arrays)


def run_blocks(run, kernel, args, parts, arrays):
    """``run(k, lo, hi)`` for each block k, (lo, hi), of ``parts`` side by side on gvae's threads
    (:func:`threads.run`), a worker's block through the C entry of ``kernel`` with the arguments
    ``args(k, lo, hi)``, where ``arrays`` (those whose addresses ``args`` gives) are :func:`usable`, else in
    the worker's Python; one block runs here, with no hand-over."""
    if len(parts) == 1:
        run(0, *parts[0])
        return
    blocks = [(k, lo, hi) for k, (lo, hi) in enumerate(parts)]
    if not usable(*arrays):
        threads.run([lambda b=b: run(*b) for b in blocks])
        return
    threads.run([Call(lambda b=b: run(*b), kernel, lambda b=b: args(*b)) for b in blocks])


def row_address(a, row):
    """The address of row ``row`` of the C-ordered array ``a`` (of entry ``row`` of a 1-D one), for an
    entry's argument: the start of a block of rows."""
    return a.ctypes.data + row * a.strides[0]


def bits(x):
    """The 64-bit pattern of the float ``x`` as a (signed) int, for an entry's argument."""
    return struct.unpack("<q", struct.pack("<d", x))[0]


@intrinsic
def float_of(typingctx, pattern):
    """The float64 whose 64-bit pattern is the int64 ``pattern`` (:func:`bits` inverted)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _pointer(typingctx, address, dtype):
    """A pointer to ``dtype`` (a NumPy scalar type, np.float32) at the int64 ``address``."""
    target = dtype.instance_type

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
    return types.CPointer(target)(types.int64, dtype), codegen


@jit
def array_at(address, shape, dtype):
    """The C-ordered array of ``shape`` (an int or a tuple) and ``dtype`` whose data are at ``address``."""
    return carray(_pointer(address, dtype), shape)
