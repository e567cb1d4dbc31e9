"""The one Numba decorator of gvae's CPU kernels (:func:`jit`: ``numba.njit`` with the on-disk cache when it
can work), and the compilation of a C entry (:func:`compile_entry`: a Numba ``cfunc``, for
:mod:`entries`), cached the same way.

Where the cache lives and how processes share its files: :mod:`compile_cache`. Each compilation is
announced (:mod:`compilations`): on a cold cache it takes minutes.
"""
from numba import njit

from .compile_cache import CACHING, LockedCacheFile
from .numba_compat import compile_cfunc, wrap_cache_file, wrap_compile
from .state import RUNTIME

__all__ = ["jit", "compile_entry", "report_compilations", "compiling_seconds"]


def jit(fn=None, **options):
    """``numba.njit`` with ``cache`` set to :data:`compile_cache.CACHING` (callers may still pass
    ``cache=False``) and ``nogil``, so that gvae's threads (:mod:`threads`) run kernels side by side; a
    cached kernel's files are read and written under their folder's lock
    (:class:`compile_cache.LockedCacheFile`), and its compilation is announced. ``@jit`` or
    ``@jit(**options)``."""
    if fn is None:
        return lambda f: jit(f, **options)
    options.setdefault("cache", CACHING)
    options.setdefault("nogil", True)
    dispatcher = njit(**options)(fn)
    if options["cache"]:
        wrap_cache_file(dispatcher, LockedCacheFile)
        wrap_compile(dispatcher, _announced)
    return dispatcher


def _announced(compile):
    """A dispatcher's ``compile(sig)`` as one session of the process's announcement of compilation."""
    def announced(sig):
        with RUNTIME.compilations.session():
            return compile(sig)
    return announced


def compile_entry(fn, signature, **options):
    """``fn`` compiled now as a C callback of ``signature`` (Numba's ``cfunc``: ``.address``), cached as
    :func:`jit` caches kernels, under the same lock."""
    with RUNTIME.compilations.session():
        return compile_cfunc(fn, signature, LockedCacheFile if CACHING else None, **options)


def report_compilations():
    """Say, in one line, the kernels compiled since the last report and how long they took (nothing when none
    were): a command calls it before each line it prints, so that the line follows the wait it explains."""
    RUNTIME.compilations.report()


def compiling_seconds():
    """The seconds this process has spent compiling gvae's kernels so far, which an estimate of the time
    left leaves out: a cold cache compiles once, in the first steps."""
    return RUNTIME.compilations.seconds()
