"""A stand-in for ``cupy`` under which gvae's real ``*_cuda.py`` modules run their CUDA kernels in the
host emulator (emulator.py, cuda_host.h): the launch configuration, template arguments, name expressions
and argument types come from the very code a GPU run uses.

Arrays are :class:`ndarray`, a :class:`tests.fake_device.DeviceArray` (NumPy inside, never handed out
implicitly; not a FakeArray, so that the backend keeps the two devices apart) with CuPy's ``device``.
Every buffer this module allocates sits between two guard bands of 0xff bytes, checked after each
launch (a write out of bounds is an error; a read there gives NaN), and ``empty`` fills it with 0xff
bytes (NaN) so that a read of what no kernel wrote shows. The device reports :data:`SM_COUNT`
multiprocessors, few enough that the grid-stride loops take several turns.

:func:`installed` puts the module in ``sys.modules["cupy"]`` and empties the caches gvae keeps of the
CuPy it met (compiled modules, offsets on the device, the multiprocessor count), on entry and on exit.
"""
import contextlib
import importlib
import os
import random
import sys
import types
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tests.cuda_emulation import emulator, fake_cublas
from tests.fake_device import CAPTURED, DeviceArray, _done, _Module, _unwrap

SM_COUNT = 2
MEMORY_BYTES = 16 * 1024**3  # what the emulated device reports as its global memory
GUARD = 256  # bytes each side of a buffer
_GUARDED = weakref.WeakValueDictionary()  # id(root buffer) -> root buffer


class ndarray(DeviceArray):  # noqa: N801  (cupy's spelling)
    """A device array of the emulated GPU."""

    __slots__ = ()
    device = property(lambda self: DEVICE)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    data = property(lambda self: _Pointer(self._a.ctypes.data))  # the address of element [0, ...]

    def __repr__(self):
        return f"emulated cupy.ndarray(shape={self.shape}, dtype={self.dtype})"


class _Pointer:
    """``ndarray.data`` and ``cupy.cuda.Memory``: a device address as ``ptr``."""

    def __init__(self, ptr, keep=None):
        self.ptr, self._keep = ptr, keep


class _Stream:
    """The emulated GPU's one stream (CuPy's default: a null pointer)."""

    ptr = 0


class Stream:
    """``cupy.cuda.Stream``: work on the emulated GPU runs at once, in order, whatever the stream. Between
    ``begin_capture`` and ``end_capture`` a kernel's launch and a cuBLAS call are recorded instead of run,
    and CuPy's own operators run and are recorded too (tests/fake_device.CAPTURED: on whatever their
    inputs hold then, to be done again), into the :class:`Graph` that ``end_capture`` returns; a read to
    the host, or a copy from it, is refused, as CUDA does."""

    def __init__(self, non_blocking=False):
        self.ptr = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def record(self):
        """An event: None, since the work issued before it is done already."""

    def wait_event(self, event):
        """Nothing to wait for: every stream's work is done when it is issued."""

    def synchronize(self):
        """Nothing to wait for (see :meth:`wait_event`)."""

    def begin_capture(self):
        if CAPTURED:
            raise RuntimeError("emulated stream: a capture is under way already")
        CAPTURED.append([])

    def end_capture(self):
        return Graph(CAPTURED.pop())


Stream.null = Stream()


class Graph:
    """``cupyx.cuda.Graph``: the work a capture recorded, done again in order by ``launch``."""

    def __init__(self, work):
        self._work = work

    def launch(self, stream=None):
        for step in self._work:
            step()


class MemoryPool:
    """``cupy.cuda.MemoryPool``: the emulation allocates each array afresh, so its ``malloc`` is never
    called (``using_allocator`` sets nothing)."""

    def malloc(self, nbytes):
        raise NotImplementedError("the emulated device allocates without a pool")


@contextlib.contextmanager
def _using_allocator(allocator=None):
    yield


def _memory(nbytes):
    """``cupy.cuda.Memory(nbytes)``: raw device memory outside the pool."""
    buffer = _guarded((nbytes,), np.uint8)
    return _Pointer(buffer.ctypes.data, buffer)


class _Device:
    """The one emulated GPU: ``with device:`` makes it current (it always is)."""

    id = 0
    attributes = {"MultiProcessorCount": SM_COUNT}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


DEVICE = _Device()


def _guarded(shape, dtype):
    """A NumPy array in a fresh buffer between guard bands, filled with 0xff bytes."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    root = np.full(nbytes + 2 * GUARD, 0xFF, dtype=np.uint8)
    _GUARDED[id(root)] = root
    return root[GUARD:GUARD + nbytes].view(dtype).reshape(shape)


def _root(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def check_guards(name, arrays):
    """Raise unless the guard bands around the buffers of ``arrays`` are intact."""
    for a in arrays:
        root = _root(a)
        if _GUARDED.get(id(root)) is root and not (np.all(root[:GUARD] == 0xFF) and np.all(root[-GUARD:] == 0xFF)):
            raise RuntimeError(f"emulated kernel {name} wrote outside a buffer (shape {a.shape}, {a.dtype}): "
                               "its guard band changed")


class Function:
    """A kernel of a RawModule: ``fn(grid, block, args, shared_mem=0)`` as CuPy's."""

    def __init__(self, kernel):
        self._kernel = kernel

    def __call__(self, grid, block, args, shared_mem=0):
        if CAPTURED:  # recorded for the graph's launches, after the checks of a launch
            self._checked(args)
            CAPTURED[-1].append(lambda: self(grid, block, args, shared_mem))
            return
        self._checked(args)
        host = [_unwrap(a) for a in args]
        self._kernel.launch(grid, block, host, shared_mem)
        check_guards(self._kernel.name, [a for a in host if isinstance(a, np.ndarray)])

    def _checked(self, args):
        for a in args:
            if isinstance(a, np.ndarray):
                raise TypeError(f"{self._kernel.name}: a NumPy array among the kernel's arguments (CuPy "
                                "refuses host arrays)")
            if isinstance(a, DeviceArray) and not isinstance(a, ndarray):
                raise TypeError(f"{self._kernel.name}: an array of another device among the arguments")


class RawModule:
    """``cupy.RawModule(code=..., options=..., name_expressions=[...])``, compiled for the emulator."""

    def __init__(self, code, options=(), name_expressions=()):
        if "--std=c++17" not in options:
            raise ValueError(f"emulated RawModule: expected --std=c++17 among the options, got {options}")
        self._library = emulator.Library(code, name_expressions)

    def get_function(self, name):
        return Function(self._library.kernel(name))


class _Cupy(_Module):
    """The module: NumPy's namespace over :class:`ndarray`, with what gvae takes from CuPy itself."""

    ndarray = ndarray
    RawModule = RawModule

    def __init__(self):
        super().__init__()

        def _properties(device_id):
            return {"totalGlobalMem": MEMORY_BYTES}

        self.cuda = types.SimpleNamespace(Device=lambda device_id=0: DEVICE, Memory=_memory,
                                          get_current_stream=lambda: _Stream, Stream=Stream,
                                          MemoryPool=MemoryPool, using_allocator=_using_allocator,
                                          runtime=types.SimpleNamespace(getDeviceCount=lambda: 1,
                                                                        getDeviceProperties=_properties))

    @staticmethod
    def asarray(a, dtype=None):
        if isinstance(a, ndarray) and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        if isinstance(a, ndarray):  # a cast on the device
            out = _guarded(a.shape, dtype)
            _done(lambda: np.copyto(out, a._a, casting="unsafe"), (out, a._a), writes=True)
            return ndarray(out)
        if CAPTURED:
            raise RuntimeError("emulated stream: a copy from the host while the stream is capturing (CUDA "
                               "refuses a synchronous copy in a capture)")
        host = np.asarray(a, dtype=dtype)
        out = _guarded(host.shape, host.dtype)
        out[...] = host
        return ndarray(out)

    @staticmethod
    def asnumpy(a):
        if CAPTURED:
            raise RuntimeError("emulated stream: a copy to the host while the stream is capturing (CUDA "
                               "refuses a synchronisation in a capture)")
        return np.array(a._a, copy=True)

    @staticmethod
    def empty(shape, dtype=np.float64):
        return ndarray(_guarded(shape, dtype))

    @staticmethod
    def zeros(shape, dtype=np.float64):
        out = _guarded(shape, dtype)
        _done(lambda: out.fill(0), (out,), writes=True)  # a memset, done again by a graph's launch
        return ndarray(out)

    def ascontiguousarray(self, a):
        if a.flags.c_contiguous:
            return a
        out = _guarded(a.shape, a.dtype)
        _done(lambda: np.copyto(out, a._a), (out, a._a), writes=True)
        return ndarray(out)


cupy = _Cupy()


def owners(*addresses):
    """The buffers this module allocated that hold the device ``addresses``: what a recorded library call
    keeps alive until a graph's launch (CUDA's pool keeps a graph's memory)."""
    return [root for root in list(_GUARDED.values())
            if any(root.ctypes.data <= p < root.ctypes.data + root.nbytes for p in addresses)]


def _reset_gvae_caches():
    """Forget what gvae cached of the CuPy it met: its compiled modules and kernels, offsets uploaded,
    the multiprocessor count, the memory size and the registered "cuda" device (its array type changes
    with the module)."""
    from gvae.kernels import backend
    from gvae.kernels.band import common_cuda
    from gvae.kernels.cuda import build, cublas
    cublas._library = None
    cublas._handles.clear()
    for source in build.SOURCES.values():
        source._modules.clear()
        source._functions.clear()
    build._sm_count.cache_clear()
    build._memory_bytes.cache_clear()
    common_cuda._offsets_on_device.clear()
    backend._DEVICES.pop("cuda", None)


def precompile():
    """Build every CUDA source of gvae for float and double now, two at a time per core, in an order
    of this process's own (test processes beside it take the others first)."""
    from gvae.kernels import backend
    from gvae.kernels.cuda import build
    for name in backend.cuda_modules():
        importlib.import_module(name)
    jobs = [(s.text(), s.instantiations(ct)) for s in build.SOURCES.values() for ct in ("float", "double")]
    random.Random(os.getpid()).shuffle(jobs)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: emulator.build(*job), jobs))


@contextlib.contextmanager
def installed():
    """``sys.modules["cupy"]`` is the emulated CuPy inside the block (gvae's caches emptied on both sides)."""
    previous = sys.modules.get("cupy")
    _reset_gvae_caches()
    sys.modules["cupy"] = cupy
    from gvae.kernels.cuda import cublas
    cublas._library = fake_cublas.FakeCublas()  # gvae's GEMMs call it as they would libcublas
    try:
        yield cupy
    finally:
        if previous is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = previous
        _reset_gvae_caches()
