"""The BLAS that NumPy loaded, held to one thread while gvae's kernels call it.

gvae's CPU kernels that call the BLAS (the products of :mod:`gvae.kernels.matmul_cpu`) run each call on
the thread that makes it, whatever thread count the process's BLAS has: with gvae's threads in use,
OpenBLAS's own workers, woken by a call it ran on several, would spin on the core that the next split call needs; on
one gvae thread, one thread is what was asked for; and OpenBLAS cuts a product differently with its
thread count, so the rounding of gvae's results would depend on a setting outside gvae (a step from
Python, in a process whose OpenBLAS has every core, differed from ``gvae train``'s in the last bits).

The libraries are found among those loaded into this process: by threadpoolctl's scan where it is
installed (``gvae[blas]``; portable: Linux, macOS, Windows), else from ``/proc/self/maps`` by their file
names (Linux). NumPy's own library comes first. gvae then calls the library's own thread-count functions
(OpenBLAS under the symbol names of NumPy's wheels, ``scipy_openblas_*64_``, and of plain builds; MKL;
BLIS) directly, not threadpoolctl's controllers: a controller's OpenBLAS setter is ignored on any thread
but the first that used it, and its ``threadpool_limits`` scans the process at every entry
(docs/notes/2026-11-performance-kernels.md, "The BLAS's thread count"). Elsewhere (another BLAS, another system without
threadpoolctl) the BLAS keeps its own threads. What was found, and the hold, are
:data:`state.RUNTIME`'s (``blas``).
"""
import ctypes
import os
import threading

from .state import RUNTIME

__all__ = ["settable", "one_thread", "gemm_address", "gemv_address", "triangular_addresses", "core", "library"]

# The symbol names of OpenBLAS builds: (thread-count prefix, cblas prefix, suffix); "64_" marks the ILP64
# builds (64-bit sizes) that NumPy's wheels ship.
_NAMES = (("scipy_openblas", "scipy_cblas", "64_"), ("openblas", "cblas", "64_"), ("scipy_openblas", "scipy_cblas", ""),
          ("openblas", "cblas", ""))


# The thread-count functions (get, set) of the other BLAS libraries threadpoolctl knows, by its internal_api.
_OTHERS = {"mkl": ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
           "blis": ("bli_thread_get_num_threads", "bli_thread_set_num_threads")}
# How the file names of each kind begin, for the scan without threadpoolctl (threadpoolctl's own prefixes).
_FILE_NAMES = {"openblas": ("libopenblas", "libscipy_openblas"), "mkl": ("libmkl_rt",), "blis": ("libblis",)}


def _numpys_first(found):
    """``found`` ((path, kind) pairs) sorted with the libraries inside NumPy's installation (its wheels'
    ``numpy.libs``, ``numpy/.dylibs``) first, then by path."""
    import numpy
    home = os.path.dirname(os.path.abspath(numpy.__file__))
    inside = (home + os.sep, home + ".libs" + os.sep)
    return sorted(set(found), key=lambda item: (not os.path.abspath(item[0]).startswith(inside), item))


def _loaded():
    """The BLAS libraries loaded into this process, as (path, kind) pairs, kind "openblas", "mkl" or "blis",
    NumPy's first (:func:`_numpys_first`): threadpoolctl's scan where it is installed, else the Linux maps."""
    try:
        import threadpoolctl
    except ImportError:
        threadpoolctl = None
    if threadpoolctl is not None:
        libraries = threadpoolctl.ThreadpoolController().lib_controllers
        return _numpys_first((lib.filepath, lib.internal_api) for lib in libraries
                             if lib.user_api == "blas" and lib.internal_api in _FILE_NAMES and lib.filepath)
    try:
        with open("/proc/self/maps") as maps:
            paths = {fields[5] for fields in map(str.split, maps) if len(fields) >= 6 and fields[5].startswith("/")}
    except OSError:
        paths = set()
    return _numpys_first((path, kind) for path in paths for kind, names in _FILE_NAMES.items()
                         if os.path.basename(path).startswith(names))


def _bind(lib, get_name, set_name):
    """(get, set) of a library's thread count as ctypes functions, or None where either is missing."""
    get, put = getattr(lib, get_name, None), getattr(lib, set_name, None)
    if get is None or put is None:
        return None
    get.restype, get.argtypes = ctypes.c_int, []
    put.restype, put.argtypes = None, [ctypes.c_int]
    return get, put


def _controls_of(path, kind, known):
    """(get, set) of the thread count of the library at ``path`` of ``kind``, or None; for an ILP64
    OpenBLAS also notes its product and triangular routines' addresses and its kernels' name in ``known``."""
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    if kind != "openblas":
        return _bind(lib, *_OTHERS[kind])
    for prefix, cblas, suffix in _NAMES:
        found = _bind(lib, f"{prefix}_get_num_threads{suffix}", f"{prefix}_set_num_threads{suffix}")
        if found is None:
            continue
        corename = getattr(lib, f"{prefix}_get_corename{suffix}", None)
        if corename is not None:
            corename.restype, corename.argtypes = ctypes.c_char_p, []
            known["core"] = corename().decode()
        if suffix == "64_":
            for routine in ("gemm", "gemv"):
                known[routine] = {char: ctypes.cast(getattr(lib, f"{cblas}_{name}{routine}{suffix}", None),
                                                    ctypes.c_void_p).value for char, name in ("fs", "dd")}
            lapacke = "scipy_LAPACKE" if prefix.startswith("scipy") else "LAPACKE"
            known["triangular"] = tuple(ctypes.cast(getattr(lib, name, None), ctypes.c_void_p).value
                                        for name in (f"{lapacke}_dtrtri64_", f"{cblas}_dtrmm{suffix}"))
        return found
    return None


def _controls():
    """(get, set) of the thread count of the BLAS that NumPy loaded, as ctypes functions, or None."""
    known = RUNTIME.blas
    if "controls" in known:
        return known["controls"]
    found = None
    for path, kind in _loaded():
        found = _controls_of(path, kind, known)
        if found is not None:
            known["library"] = (kind, path)
            break
    known["controls"] = found
    return found


def library():
    """(kind, path) of the BLAS whose thread count gvae holds: kind "openblas", "mkl" or "blis"; None where
    none was found whose count can be set."""
    _controls()
    return RUNTIME.blas.get("library")


def gemm_address(dtype):
    """The address of ``cblas_sgemm`` (float32) or ``cblas_dgemm`` (float64) of the ILP64 OpenBLAS that
    NumPy loaded, for a product run outside Python (:mod:`worker_loop`); None where there is none (another
    BLAS, 32-bit sizes, or a thread count that cannot be held)."""
    _controls()
    return RUNTIME.blas.get("gemm", {}).get(dtype.char)


def gemv_address(dtype):
    """The address of ``cblas_sgemv`` (float32) or ``cblas_dgemv`` (float64) of that OpenBLAS (a matrix times
    a vector, as NumPy's matmul computes it), or None (as :func:`gemm_address`)."""
    _controls()
    return RUNTIME.blas.get("gemv", {}).get(dtype.char)


def triangular_addresses():
    """(``LAPACKE_dtrtri``, ``cblas_dtrmm``) of the ILP64 OpenBLAS that NumPy loaded (float64: the inverse of
    a triangular matrix, and a triangular matrix times a full one), for kernels that call them without the
    GIL (:mod:`..band.dense_inverse_cpu`); None where either is missing (as :func:`gemm_address`)."""
    _controls()
    found = RUNTIME.blas.get("triangular")
    return found if found is not None and all(found) else None


def core():
    """The name of the kernels that the OpenBLAS NumPy loaded chose for this CPU (``Haswell``, ``SkylakeX``,
    ...: its ``openblas_get_corename``), or None where it is not known. OpenBLAS picks them once, when it
    loads, from the CPU's identity, or from ``$OPENBLAS_CORETYPE`` when that is set: where it picks
    kernels slower than the CPU could run, that variable chooses others (docs/notes/2026-11-performance-kernels.md)."""
    _controls()
    return RUNTIME.blas.get("core")


def settable():
    """Whether the BLAS's thread count can be read and set here (so :func:`one_thread` holds it)."""
    return _controls() is not None


class _Hold:
    """While entered (by any number of threads at once), the BLAS runs each call on the calling thread;
    the count it had is restored when the last one leaves. One per process (:func:`one_thread`)."""

    def __init__(self, controls):
        self.get, self.put = controls
        self.lock = threading.Lock()
        self.depth = 0
        self.saved = 1

    def __enter__(self):
        with self.lock:
            if self.depth == 0:
                self.saved = self.get()
                if self.saved != 1:
                    self.put(1)
            self.depth += 1

    def __exit__(self, *exc):
        with self.lock:
            self.depth -= 1
            if self.depth == 0 and self.saved != 1:
                self.put(self.saved)

    def after_fork(self):
        """In a forked child (:meth:`state.Runtime.after_fork`): a fork while another thread was inside
        the hold leaves that thread out of the child, so its exit never comes. The child gets the BLAS's
        count back and a lock no one holds."""
        self.lock = threading.Lock()
        if self.depth and self.saved != 1:
            self.put(self.saved)
        self.depth = 0


class _NoHold:
    """The hold where the BLAS's thread count cannot be set: nothing to do."""

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None

    def after_fork(self):
        return None


def one_thread():
    """A context within which each BLAS call runs on the thread that makes it (a context that does
    nothing where the count cannot be set)."""
    if "hold" not in RUNTIME.blas:
        controls = _controls()
        RUNTIME.blas["hold"] = _NoHold() if controls is None else _Hold(controls)
    return RUNTIME.blas["hold"]
