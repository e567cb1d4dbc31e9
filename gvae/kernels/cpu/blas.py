"""The BLAS that NumPy loaded, held to one thread while gvae's kernels call it.

gvae's CPU kernels that call the BLAS (the products of :mod:`gvae.kernels.matmul_cpu`) run each call on
the thread that makes it, whatever thread count the process's BLAS has: with gvae's threads in use,
OpenBLAS's own workers, woken by a call it ran on several, would spin on the core that the next split call needs; on
one gvae thread, one thread is what was asked for; and OpenBLAS cuts a product differently with its
thread count, so the rounding of gvae's results would depend on a setting outside gvae (a step from
Python, in a process whose OpenBLAS has every core, differed from ``gvae train``'s in the last bits). The
count is found through the libraries mapped into this process (``/proc/self/maps``), under the symbol
names of NumPy's wheels (``scipy_openblas_*64_``) and of plain OpenBLAS builds; elsewhere (another BLAS,
another system) the BLAS keeps its own threads. What was found, and the hold, are
:data:`state.RUNTIME`'s (``blas``).
"""
import ctypes
import threading

from .state import RUNTIME

__all__ = ["settable", "one_thread", "gemm_address", "triangular_addresses", "core"]

# The symbol names of OpenBLAS builds: (thread-count prefix, cblas prefix, suffix); "64_" marks the ILP64
# builds (64-bit sizes) that NumPy's wheels ship.
_NAMES = (("scipy_openblas", "scipy_cblas", "64_"), ("openblas", "cblas", "64_"), ("scipy_openblas", "scipy_cblas", ""),
          ("openblas", "cblas", ""))


def _controls():
    """(get, set) of the thread count of the OpenBLAS that NumPy loaded, as ctypes functions, or None."""
    known = RUNTIME.blas
    if "openblas" in known:
        return known["openblas"]
    found = None
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]})
    except OSError:
        paths = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, cblas, suffix in _NAMES:
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                found = (get, put)
                corename = getattr(lib, f"{prefix}_get_corename{suffix}", None)
                if corename is not None:
                    corename.restype, corename.argtypes = ctypes.c_char_p, []
                    known["core"] = corename().decode()
                if suffix == "64_":
                    known["gemm"] = {char: ctypes.cast(getattr(lib, f"{cblas}_{name}gemm{suffix}", None),
                                                       ctypes.c_void_p).value for char, name in ("fs", "dd")}
                    lapacke = "scipy_LAPACKE" if prefix.startswith("scipy") else "LAPACKE"
                    known["triangular"] = tuple(ctypes.cast(getattr(lib, name, None), ctypes.c_void_p).value
                                                for name in (f"{lapacke}_dtrtri64_", f"{cblas}_dtrmm{suffix}"))
                break
        if found:
            break
    known["openblas"] = found
    return found


def gemm_address(dtype):
    """The address of ``cblas_sgemm`` (float32) or ``cblas_dgemm`` (float64) of the ILP64 OpenBLAS that
    NumPy loaded, for a product run outside Python (:mod:`worker_loop`); None where there is none (another
    BLAS, 32-bit sizes, or a thread count that cannot be held)."""
    _controls()
    return RUNTIME.blas.get("gemm", {}).get(dtype.char)


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
    kernels slower than the CPU could run, that variable chooses others (docs/performance.md)."""
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
