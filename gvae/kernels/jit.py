"""The one Numba decorator of gvae's CPU kernels: ``numba.njit`` with the on-disk cache when it can work.

Numba caches compiled kernels in the package's ``__pycache__`` folders, else in its user-wide cache
(``~/.cache/numba``), else in ``$NUMBA_CACHE_DIR``; with none of them writable, ``cache=True`` makes the
decoration itself fail, and ``import gvae`` with it. This module checks once, at import, whether one of
those places is writable: if so every kernel is cached there, if not the kernels are compiled afresh in
each process (correct, only slower to start) and one warning says how to give Numba a cache folder.
The in-tree cache is kept whole: when any kernel source changes, all of it is dropped and compiled again
(:func:`drop_stale_cache`), since Numba would keep a kernel whose inlined helpers changed in another file.

Numba's cache is not safe for processes that compile the same kernel at once (numba/numba#10128): each
reads a kernel's index, picks the first free data file name and writes both, so two processes compiling
two signatures can both pick name 1, and the index of one then points at the other's machine code: a
float32 call runs float64 code ("can't unbox array"), or crashes. Every cached kernel therefore reads its
cache files under a shared ``flock`` of their folder's lock file and writes them under an exclusive one
(:class:`_LockedCacheFile`); dropping the stale cache takes the exclusive locks too. The C entries of
:mod:`native_cpu` (Numba ``cfunc``) are compiled and cached the same way (:func:`compile_entry`).
gvae sets no environment variable and changes no Numba setting.
"""
import contextlib
import glob
import hashlib
import os
import warnings

from numba import config, njit

from .shared_files import file_lock, replace_text, writable_folder
from .numba_compat import compile_cfunc, numba_user_cache_dir, wrap_cache_file

__all__ = ["jit", "compile_entry", "CACHING", "cache_is_cold"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_FOLDERS = (_HERE, os.path.join(_HERE, "band"))  # the kernel folders; each caches in its __pycache__
_STAMP = "gvae-kernels.sha256"
_LOCK = ".gvae-numba.lock"  # in each cache folder; a dot file, so that no glob of cache files meets it


def _caching_possible():
    """Whether Numba will find a writable cache for every kernel: ``$NUMBA_CACHE_DIR`` when set (Numba
    then uses nothing else), else the in-tree ``__pycache__`` folders of both kernel folders, else the
    user-wide cache."""
    if config.CACHE_DIR:
        return writable_folder(config.CACHE_DIR)
    return _IN_TREE or writable_folder(numba_user_cache_dir())


def sources_digest(folders=_FOLDERS):
    """SHA-256 (hex) of the kernels' Python sources: every ``*.py`` of ``folders``, in name order."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "*.py"))):
            digest.update(os.path.basename(path).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def drop_stale_cache(folders=_FOLDERS):
    """Keep the in-tree cache of ``folders`` one unit: Numba checks a cached kernel against its own file's
    timestamp only, not against the helpers it inlines from other files (vecmath_cpu, band/common_cpu,
    ...), so a changed helper would leave the kernels that use it running its old code. When the digest of
    the sources differs from the one recorded in ``folders[0]/__pycache__`` (or none is recorded), every
    cached kernel (``*.nbi``, ``*.nbc``) there is removed and the digest recorded; they compile afresh.
    Returns the number of files removed."""
    record = os.path.join(folders[0], "__pycache__", _STAMP)
    digest = sources_digest(folders)
    if _recorded(record) == digest:
        return 0
    with contextlib.ExitStack() as locks:  # in folder order, the only place that holds two
        for folder in folders:
            locks.enter_context(_cache_lock(os.path.join(folder, "__pycache__"), exclusive=True))
        if _recorded(record) == digest:  # another process dropped it while this one waited
            return 0
        removed = 0
        for folder in folders:
            for path in glob.glob(os.path.join(folder, "__pycache__", "*.nb[ic]")):
                os.unlink(path)
                removed += 1
        replace_text(record, digest + "\n")
    return removed


def _recorded(record):
    """The digest that ``record`` holds, or None."""
    try:
        with open(record) as f:
            return f.read().strip()
    except OSError:
        return None


def _cache_lock(folder, exclusive):
    """The lock of ``folder``'s cache files (:func:`file_lock`): exclusive to write them, shared to read."""
    return file_lock(os.path.join(folder, _LOCK), exclusive)


class _LockedCacheFile:
    """Numba's reader and writer of one kernel's cache files (index and data, in ``folder``), each call
    under the folder's lock: a save (read the index, pick a data file name, write both) is one step for
    every other process, and a load never pairs an index with data files written for another one."""

    def __init__(self, files, folder):
        self._files, self._folder = files, folder

    def load(self, key):
        with _cache_lock(self._folder, exclusive=False):
            return self._files.load(key)

    def save(self, key, data):
        with _cache_lock(self._folder, exclusive=True):
            self._files.save(key, data)

    def flush(self):
        with _cache_lock(self._folder, exclusive=True):
            self._files.flush()


# Whether Numba caches in the kernel folders' own __pycache__ (checked once: each check writes a file).
_IN_TREE = all(writable_folder(os.path.join(d, "__pycache__")) for d in _FOLDERS)
CACHING = _caching_possible()
if CACHING and not config.CACHE_DIR and _IN_TREE:
    drop_stale_cache()
if not CACHING:
    warnings.warn("gvae: Numba cannot cache gvae's compiled kernels (neither the package's __pycache__ "
                  f"nor {numba_user_cache_dir()} is writable), so they are compiled again in every process; "
                  "set NUMBA_CACHE_DIR to a writable folder to keep them", RuntimeWarning, stacklevel=2)


def cache_is_cold():
    """Whether gvae's kernels will be compiled in this process although they could be cached: the
    in-tree cache is writable but holds no index file (``*.nbi``, Numba's documented cache format) for
    the kernels yet, as after a fresh install. Where the cache lives elsewhere this is not known: False."""
    if not CACHING or config.CACHE_DIR or not _IN_TREE:
        return False
    return not any(glob.glob(os.path.join(d, "__pycache__", "*_cpu.*.nbi")) for d in _FOLDERS)


def jit(fn=None, **options):
    """``numba.njit`` with ``cache`` set to :data:`CACHING` (callers may still pass ``cache=False``) and
    ``nogil``, so that gvae's threads (:mod:`threads`) run kernels side by side; a cached kernel's files
    are read and written under their folder's lock (:class:`_LockedCacheFile`). ``@jit`` or
    ``@jit(**options)``."""
    if fn is None:
        return lambda f: jit(f, **options)
    options.setdefault("cache", CACHING)
    options.setdefault("nogil", True)
    dispatcher = njit(**options)(fn)
    if options["cache"]:
        wrap_cache_file(dispatcher, _LockedCacheFile)
    return dispatcher


def compile_entry(fn, signature, **options):
    """``fn`` compiled now as a C callback of ``signature`` (Numba's ``cfunc``: ``.address``), cached as
    :func:`jit` caches kernels, under the same lock."""
    return compile_cfunc(fn, signature, _LockedCacheFile if CACHING else None, **options)
