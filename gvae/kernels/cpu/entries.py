"""C entries through which a gvae worker runs a Numba kernel without Python (:mod:`worker_loop`), each made
from one declared argument list.

A worker handed a Python task must take the GIL to run it, and the caller then waits for the GIL's turn
as well as for the task, where a product handed over as a BLAS call is seen and run at once (the
measurements: docs/notes/2026-11-threads-measured.md). An *entry* is a kernel compiled as a C function ``void entry(int64
*args)`` (a Numba ``cfunc``) that reads its arguments from the worker's board. A task posts the entry's
address and its arguments (kind ``worker_loop.CALL``) and the worker calls it from its native loop. An
entry must not raise (nothing would see the exception): its kernel may not allocate or fail.

An entry is declared once, beside its kernel (:class:`Entry`): each of the kernel's parameters in order,
as an :func:`array` of the kernel's dtype or of a fixed one, its shape given by size names
(``array("m", "n")``; a name met before is the same size), or as :data:`INT`, :data:`FLOAT` or
:data:`FLAG`; and how many float64 values of what the kernel returns the entry writes back
(``results``). From that one list come both sides of the board:

- the packing, in Python (:meth:`Entry.pack`), from the very arguments that the caller's thread passes to
  the kernel: per parameter an array's address (of its first item: a block of rows is a view that starts
  at the block's first row) followed by each size of its shape not named before, an int as it is, a float
  as its 64-bit pattern (:func:`bits`), a flag as 0 or 1; last the address of the results.
- the unpacking, natively: the C function ``entry(args)`` itself, generated from the list, rebuilds the
  arrays (:func:`array_at`, C-ordered as the caller's are, and read-only where the caller's are:
  :func:`read_only`) and the floats (:func:`float_of`) and calls the kernel: the same compiled kernel on
  the same data as the caller's thread. (One generated function, not a jitted unpacking called by a C
  function: Numba optimises and compiles again the code of whatever a function calls, so each level more
  compiled the kernel's code once more.)

Numba compiles a kernel once per signature, and an array's dtype and read-only flag are both part of its
type. So each *variant* of the caller's arguments, their dtype and which of their arrays are read-only, has
a C entry of its own (:meth:`Entry.address`), compiled when a call of that variant first asks for it: a
float32 run compiles no float64 kernel behind its entries, and an entry handed the read-only arrays that
gvae's band functions pass their kernels (``layout._read``) calls the kernel those functions compiled,
not a second copy typed writable. :attr:`Call.native` picks the variant from the arguments. The layout is
part of the type too: while a program is recorded, the caller's thread runs an entry with strided arrays
through the kernel the entry calls, those arrays typed as spaced rows even where they are contiguous
(:meth:`Entry.run`).

The generated function is filed under the kernel's own source file (:func:`specialise.specialise`), so
that their cache goes stale with that file. An entry is compiled the first time it is asked for in a
process, or loaded from the cache as gvae's other kernels are (:func:`jit.compile_entry`).
"""
import inspect
import operator
import struct

import numpy as np
from llvmlite import ir
from numba import carray, from_dtype, types
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

from . import threads, worker_loop
from .jit import compile_entry, jit
from .numba_compat import compiled_for
from .specialise import specialise
from .state import RUNTIME

__all__ = ["Entry", "array", "INT", "FLOAT", "FLAG", "CAPACITY", "Call", "run_blocks", "bits", "float_of",
           "array_at", "strided_at", "read_only", "row_of", "row_spacing"]

# The board slots an entry's arguments may take: those from ARGS on, less the one of the entry's address.
CAPACITY = worker_loop.SIZE - worker_loop.ARGS - 1
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_SIGNATURE = types.void(types.CPointer(types.int64))


def bits(x):
    """The 64-bit pattern of the float ``x`` as a (signed) int, for an entry's argument."""
    return struct.unpack("<q", struct.pack("<d", x))[0]


class _Scalar:
    """A parameter of an entry other than an array: :data:`INT`, :data:`FLOAT` or :data:`FLAG`, with the
    three things that the board makes of it, kept together so that they cannot part: ``put``, the int64
    that :meth:`Entry.pack` puts on the board for a value; ``read``, the source with which the C entry
    reads it back from board slot ``{}`` (:func:`_unpacking`); ``type``, its Numba type in the kernel."""
    __slots__ = ("name", "put", "read", "type")

    def __init__(self, name, put, read, type):
        self.name, self.put, self.read, self.type = name, put, read, type

    def __repr__(self):
        return self.name


# An int (on the board as it is), a float (its 64-bit pattern), a flag (0 or 1, a bool for the kernel).
INT = _Scalar("INT", int, "args[{}]", types.int64)
FLOAT = _Scalar("FLOAT", bits, "float_of(args[{}])", types.float64)
FLAG = _Scalar("FLAG", operator.truth, "args[{}] != 0", types.boolean)  # (a bool is the int 0 or 1)


class _Array:
    """An array parameter of an entry: the size names of its shape, its dtype (None: the kernel's), and
    whether its rows may be spaced wider than they are long (``strided``)."""
    __slots__ = ("sizes", "dtype", "strided")

    def __init__(self, sizes, dtype, strided):
        self.sizes, self.dtype, self.strided = sizes, dtype, strided

    def typed(self, dtype, readonly):
        """The Numba type of the array that the C entry hands the kernel of ``dtype``, read-only or not:
        :func:`array_at`'s C-ordered array, or :func:`strided_at`'s rows (layout 'A')."""
        item = from_dtype(dtype if self.dtype is None else self.dtype)
        return types.Array(item, len(self.sizes), "A" if self.strided else "C", readonly=readonly)


def array(*sizes, dtype=None, strided=False):
    """An array parameter of an entry: C-ordered, of shape ``sizes`` (each a name; the same name is the same
    size wherever it appears) and of the kernel's dtype, or of ``dtype``. ``strided`` (two axes only): its
    rows may lie apart, each contiguous (a block of columns of a wider array); on the board it takes one
    more slot, the distance between rows in items."""
    if not sizes or not all(isinstance(s, str) and s for s in sizes):
        raise ValueError(f"an entry's array takes the names of its sizes, one per axis, got {sizes!r}")
    if strided and len(sizes) != 2:
        raise ValueError(f"a strided entry array has two axes, got the sizes {sizes!r}")
    return _Array(sizes, None if dtype is None else np.dtype(dtype), strided)


class Entry:
    """The C entry of the jitted ``kernel``, declared by its parameters (keywords, in the kernel's order:
    each an :func:`array`, :data:`INT`, :data:`FLOAT` or :data:`FLAG`) and by ``results``, the number of
    float64 values of the kernel's return value (a number, or a tuple of that many) written back."""

    def __init__(self, kernel, results=0, **parameters):
        home = kernel.py_func
        names = list(inspect.signature(home).parameters)
        if list(parameters) != names:
            raise ValueError(f"the C entry of {home.__name__} declares the parameters {list(parameters)}, but the "
                             f"kernel takes {names}")
        for name, kind in parameters.items():
            if not isinstance(kind, (_Array, _Scalar)):
                raise ValueError(f"the C entry of {home.__name__}: parameter {name} is {kind!r}, not an array, INT, "
                                 "FLOAT or FLAG")
        typed = [k for k, kind in enumerate(parameters.values()) if isinstance(kind, _Array) and kind.dtype is None]
        if not typed:
            raise ValueError(f"the C entry of {home.__name__} has no array of the kernel's dtype")
        self.kernel, self.results = kernel, results
        self._kinds = tuple(parameters.values())
        self._typed = typed[0]  # the array whose dtype is the kernel's
        self._strided = any(isinstance(kind, _Array) and kind.strided for kind in self._kinds)
        self._as_entry = {}  # variant -> the kernel compiled for the entry's types of it (see run)
        _, slots = _unpacking(self._kinds, results, (False,) * self._arrays)
        if slots > CAPACITY:
            raise ValueError(f"the C entry of {home.__name__} takes {slots} arguments, and a C entry takes at most "
                             f"{CAPACITY} arguments on the board")

    @property
    def _arrays(self):
        return sum(isinstance(kind, _Array) for kind in self._kinds)

    def variant(self, arguments):
        """(the kernel's dtype, a tuple saying for each array of ``arguments`` whether it is read-only), or
        None where the entry cannot take the arrays as they are: one that is not an aligned NumPy array of
        its dtype (float32 or float64 for the kernel's) and number of axes, C-contiguous, or for a strided
        parameter with each row contiguous (:func:`row_spacing`)."""
        found = self._checked(arguments)
        return None if found is None else found[:2]

    def _checked(self, arguments):
        """:meth:`variant`'s dtype and read-only flags, and the row spacing of each strided array (in
        order), or None: the one pass over the arrays that :meth:`variant` and :meth:`pack` share."""
        dtype = getattr(arguments[self._typed], "dtype", None)
        if dtype not in _FLOATS:
            return None
        readonly, spacings = [], []
        for value, kind in zip(arguments, self._kinds):
            if isinstance(kind, _Array):
                wanted = dtype if kind.dtype is None else kind.dtype
                if kind.strided:
                    spacing = row_spacing(value, wanted)
                    if spacing is None:
                        return None
                    spacings.append(spacing)
                elif not _usable(value, wanted, len(kind.sizes)):
                    return None
                readonly.append(not value.flags.writeable)
        return dtype, tuple(readonly), spacings

    def pack(self, arguments, results=None):
        """(:meth:`variant` of the kernel's ``arguments``; their int64 board arguments, and those of
        ``results``, a float64 array of :attr:`results` values), or None where the entry cannot take them as
        they are (:meth:`variant`, or an array whose sizes disagree with another's); the worker then runs the
        kernel in Python."""
        found = self._checked(arguments)
        if found is None:
            return None
        dtype, readonly, spacings = found
        spacings = iter(spacings)
        packed, sizes = [], {}
        for value, kind in zip(arguments, self._kinds):
            if isinstance(kind, _Scalar):
                packed.append(kind.put(value))
            else:
                packed.append(value.ctypes.data)
                for name, extent in zip(kind.sizes, value.shape):
                    if name not in sizes:
                        sizes[name] = extent
                        packed.append(extent)
                    elif sizes[name] != extent:
                        return None
                if kind.strided:
                    packed.append(next(spacings))
        if self.results:
            if not _usable(results, _FLOATS[1], 1) or results.shape[0] != self.results:
                return None
            packed.append(results.ctypes.data)
        return (dtype, readonly), packed

    def run(self, arguments):
        """The kernel on ``arguments``, in this thread. While a program is recorded (:mod:`programs`), an
        entry with strided arrays runs the kernel compiled for the types its C entry gives them
        (:meth:`variant`: a strided array as Numba's layout 'A', rows spaced or not), the one the replay
        runs, where the entry can take them: Numba compiles a kernel per layout of its arguments, and each
        mix of contiguous and spaced operands that a recorded step met otherwise compiled the kernel once
        more (docs/notes/2026-11-performance-compilation.md). Other calls go to the kernel's dispatcher,
        whose typing costs a small call less than :meth:`variant`."""
        if self._strided and RUNTIME.recording.get() is not None:
            variant = self.variant(arguments)
            if variant is not None:
                compiled = self._as_entry.get(variant)
                if compiled is None:
                    compiled = self._as_entry[variant] = compiled_for(self.kernel, self._types(*variant))
                return compiled(*arguments)
        return self.kernel(*arguments)

    def _types(self, dtype, readonly):
        """The Numba types that the unpacking of the entry's ``dtype`` and ``readonly`` variant gives the
        kernel's arguments (:func:`_unpacking`)."""
        flags = iter(readonly)
        return tuple(kind.type if isinstance(kind, _Scalar) else kind.typed(dtype, next(flags)) for kind in self._kinds)

    def address(self, dtype, readonly=None):
        """The address of the entry's C function for the kernel's ``dtype`` (float32 or float64) and arrays
        read-only where ``readonly`` (a bool per array parameter, in order; None: none of them), compiled
        or loaded from the cache the first time it is asked for in this process, and kept for the life of
        the process (a worker may be about to call it)."""
        dtype = np.dtype(dtype)
        readonly = (False,) * self._arrays if readonly is None else tuple(map(bool, readonly))
        key = (self, dtype, readonly)
        compiled = RUNTIME.entries.get(key)
        if compiled is None:
            home = self.kernel.py_func
            if dtype not in _FLOATS:
                raise ValueError(f"the C entry of {home.__name__} takes float32 or float64 arrays, not {dtype}")
            if len(readonly) != self._arrays:
                raise ValueError(f"the C entry of {home.__name__} takes {self._arrays} arrays, but was given "
                                 f"{len(readonly)} read-only flags")
            with RUNTIME.compile_lock:  # one compilation per entry and variant, whichever threads ask at once
                compiled = RUNTIME.entries.get(key)
                if compiled is None:
                    # A name per variant: Numba's cache tells them apart by name (their C signature is one).
                    flags = "".join("r" if r else "w" for r in readonly)
                    source, _ = _unpacking(self._kinds, self.results, readonly)
                    fn = specialise(_plain(source, "entry", home), f"{home.__name__}_entry_{dtype.name}_{flags}",
                                    home=home.__code__.co_filename, kernel=self.kernel, DTYPE=dtype.type)
                    compiled = RUNTIME.entries[key] = compile_entry(fn, _SIGNATURE, error_model="numpy")
        return compiled.address


def _usable(a, dtype, ndim):
    """Whether an entry may be handed ``a`` by address as an array of ``dtype`` and ``ndim`` axes: a NumPy
    array of that dtype and shape length, C-contiguous and aligned, as :func:`array_at` types it."""
    return (isinstance(a, np.ndarray) and a.dtype == dtype and a.ndim == ndim and a.flags.c_contiguous
            and a.flags.aligned)


def row_spacing(a, dtype):
    """The distance in items between the rows of the 2-D ``a`` where an entry may take it as a strided
    array (a NumPy array of ``dtype``, aligned, each row contiguous, rows apart by a whole number of items
    and no closer than a row's length), else None."""
    if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.ndim == 2 and a.flags.aligned):
        return None
    (m, n), (s0, s1), size = a.shape, a.strides, a.itemsize
    if a.size == 0:  # (NumPy gives an empty array any strides)
        return n
    if n > 1 and s1 != size:
        return None
    if m <= 1:
        return n
    if s0 % size or s0 < n * size:
        return None
    return s0 // size


def _unpacking(kinds, results, readonly):
    """(the source of the C function ``entry(args)`` for parameters of ``kinds`` and ``results`` values
    written back, its arrays read-only where ``readonly`` says (one flag per array), ``kernel`` and
    ``DTYPE`` (the kernel's dtype) left for the caller to bind; the number of board arguments it reads):
    the layout of :meth:`Entry.pack`."""
    values, sizes, slot, flags = [], {}, 0, iter(readonly)
    for kind in kinds:
        if isinstance(kind, _Scalar):
            values.append(kind.read.format(slot))
        else:
            address = slot
            for name in kind.sizes:
                if name not in sizes:
                    slot += 1
                    sizes[name] = slot
            shape = [f"args[{sizes[name]}]" for name in kind.sizes]
            dtype = "DTYPE" if kind.dtype is None else f"np.{kind.dtype.name}"
            if kind.strided:
                slot += 1
                values.append(f"strided_at(args[{address}], {shape[0]}, {shape[1]}, args[{slot}], {dtype})")
            else:
                shape = shape[0] if len(shape) == 1 else f"({', '.join(shape)})"
                values.append(f"array_at(args[{address}], {shape}, {dtype})")
            if next(flags):
                values[-1] = f"read_only({values[-1]})"
        slot += 1
    call = f"kernel({', '.join(values)})"
    if results == 0:
        body = [call]
    elif results == 1:
        body = [f"array_at(args[{slot}], 1, np.float64)[0] = {call}"]
    else:
        body = [f"found = {call}", f"out = array_at(args[{slot}], {results}, np.float64)"]
        body += [f"out[{i}] = found[{i}]" for i in range(results)]
    slot += results > 0
    return "def entry(args):\n" + "".join(f"    {line}\n" for line in body), slot


def _plain(source, name, home):
    """The plain function ``name`` that ``source`` defines, seeing NumPy and this module's :func:`array_at`,
    :func:`strided_at`, :func:`read_only` and :func:`float_of`, of the module of the function ``home``."""
    namespace = {"__name__": home.__module__, "np": np, "array_at": array_at, "strided_at": strided_at,
                 "read_only": read_only, "float_of": float_of}
    exec(compile(source, f"<the C entry of {home.__qualname__}>", "exec"), namespace)
    return namespace[name]


class Call:
    """A task of :func:`threads.run`: ``entry``'s kernel on ``arguments``, its value written into
    ``results`` (a float64 array) where given. The caller's thread runs it by calling it, a worker through
    the C entry (:attr:`native`: None where the entry cannot take these arguments, and the worker calls
    the kernel in its Python). ``replayable``: whether the arguments stay valid when the call is replayed
    on new data (:mod:`programs`); False where they hold scratch sized by this call's data."""
    __slots__ = ("entry", "arguments", "results", "replayable")

    def __init__(self, entry, arguments, results=None, replayable=True):
        self.entry, self.arguments, self.results, self.replayable = entry, arguments, results, replayable

    def __call__(self):
        value = self.entry.run(self.arguments)
        if self.results is not None:
            self.results[...] = value

    def __repr__(self):
        return f"<the C entry of {self.entry.kernel.py_func.__name__}>"

    def arrays(self):
        """Every array the call reads or writes: its array arguments, then ``results``."""
        found = [a for a in self.arguments if isinstance(a, np.ndarray)]
        return found if self.results is None else found + [self.results]

    def with_arrays(self, move):
        """The same call with each array ``a`` of :meth:`arrays` replaced by ``move(a)`` (an array of its
        shape, dtype and strides elsewhere: :mod:`buffer_plan`)."""
        arguments = tuple(move(a) if isinstance(a, np.ndarray) else a for a in self.arguments)
        return Call(self.entry, arguments, None if self.results is None else move(self.results), self.replayable)

    @property
    def native(self):
        found = self.entry.pack(self.arguments, self.results)
        if found is None:
            return None
        (dtype, readonly), packed = found
        return worker_loop.CALL, (self.entry.address(dtype, readonly), *packed)


def run_blocks(entry, arguments, parts, results=None):
    """``entry``'s kernel on ``arguments(k, lo, hi)`` for each block k, (lo, hi), of ``parts``, side by side
    on gvae's threads (:func:`threads.run`), its value into ``results[k]`` (a float64 array of a row per
    block) where given; a worker's block through the C entry (:class:`Call`). One block runs here, with no
    hand-over; small blocks (:func:`threads.worth_waking`) all run here while a worker sleeps."""
    calls = [Call(entry, arguments(k, lo, hi), None if results is None else results[k])
             for k, (lo, hi) in enumerate(parts)]
    if len(calls) == 1 or not threads.worth_waking(parts):  # nothing handed over (most calls on one thread)
        threads.run_here(calls)
        return
    threads.run(calls)


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


@intrinsic
def read_only(typingctx, a):
    """The array ``a`` typed read-only (the same array: only its Numba type differs)."""
    def codegen(context, builder, signature, args):
        return impl_ret_borrowed(context, builder, signature.return_type, args[0])
    return a.copy(readonly=True)(a), codegen


@jit
def strided_at(address, m, n, spacing, dtype):
    """The (m, n) array of ``dtype`` whose rows start at ``address`` and every ``spacing`` items after
    (a view of m rows of ``spacing`` items, never read beyond each row's first n)."""
    return carray(_pointer(address, dtype), (m, spacing))[:, :n]


@jit(inline="always")
def row_of(a, i):
    """Row i of the 2-D ``a`` as a C-contiguous 1-D array (a kernel must know its rows are each contiguous,
    as a strided entry array's are): typed so, unlike ``a[i]`` of an array whose rows lie apart, so that
    LLVM vectorises the loops over it."""
    return carray(_pointer_like(a[i:].ctypes.data, a), a.shape[1])


@intrinsic
def _pointer_like(typingctx, address, like):
    """A pointer to the items of the array type ``like`` at the integer ``address``."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
    return types.CPointer(like.dtype)(address, like), codegen
