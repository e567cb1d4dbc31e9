"""Where Numba caches gvae's compiled kernels, and how processes share those files.

Numba caches compiled kernels in the package's ``__pycache__`` folders, else in its user-wide cache
(``~/.cache/numba``), else in ``$NUMBA_CACHE_DIR``; with none of them writable, ``cache=True`` makes the
decoration itself fail, and ``import gvae`` with it. This module checks once, at import, whether one of
those places is writable (:data:`CACHING`): if so every kernel is cached there, if not the kernels are
compiled afresh in each process (correct, only slower to start) and one warning says how to give Numba a
cache folder. The in-tree cache is kept whole: when any kernel source changes, all of it is dropped and
compiled again (:func:`drop_stale_cache`), since Numba would keep a kernel whose inlined helpers changed
in another file.

Numba's cache is not safe for processes that compile the same kernel at once (numba/numba#10128): each
reads a kernel's index, picks the first free data file name and writes both, so two processes compiling
two signatures can both pick name 1, and the index of one then points at the other's machine code: a
float32 call runs float64 code ("can't unbox array"), or crashes. Every cached kernel therefore reads its
cache files under a shared ``flock`` of their folder's lock file and writes them under an exclusive one
(:class:`LockedCacheFile`); dropping the stale cache takes the exclusive locks too. Where a folder's lock
cannot be held (a link or a FIFO stands at its name, :mod:`gvae.io.shared_files` refuses both), that cache is not
used, with a warning naming the lock: its kernels are compiled, neither loaded nor saved. gvae sets no
environment variable and changes no Numba setting.
"""
import contextlib
import glob
import hashlib
import os
import warnings

from numba import config

from ...io.shared_files import file_lock, read_small_text, replace_text, writable_folder
from .numba_compat import numba_user_cache_dir
from .state import RUNTIME

__all__ = ["CACHING", "LockedCacheFile", "sources_digest", "drop_stale_cache", "cache_is_cold"]

_STAMP = "gvae-kernels.sha256"
_LOCK = ".gvae-numba.lock"  # in each cache folder; a dot file, so that no glob of cache files meets it


def _kernel_folders():
    """The folder of gvae.kernels (the package above this one) and those of its subpackages, in name
    order after it: each caches its kernels in its own ``__pycache__``."""
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subpackages = sorted(entry.path for entry in os.scandir(top)
                         if entry.is_dir() and os.path.isfile(os.path.join(entry.path, "__init__.py")))
    return (top, *subpackages)


_FOLDERS = _kernel_folders()


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
    Returns the number of files removed; an OSError naming the lock of a folder where it cannot be held."""
    record = os.path.join(folders[0], "__pycache__", _STAMP)
    digest = sources_digest(folders)
    if _recorded(record) == digest:
        return 0
    with contextlib.ExitStack() as locks:  # in folder order, the only place that holds two
        for folder in folders:
            locks.enter_context(cache_lock(os.path.join(folder, "__pycache__"), exclusive=True))
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
    """The digest that the file ``record`` holds, or None (none there, or not a small regular file)."""
    try:
        text = read_small_text(record, 1024)
    except (OSError, ValueError):
        return None
    return None if text is None else text.strip()


def cache_lock(folder, exclusive):
    """The lock of ``folder``'s cache files (:func:`gvae.io.shared_files.file_lock`): exclusive to write them, shared
    to read them; an OSError naming it where it cannot be held."""
    return file_lock(os.path.join(folder, _LOCK), exclusive)


def _unlocked(folder, exc):
    """Warn that the cache in ``folder`` is not used, its lock being unusable (``exc``); Python's default
    filter shows it once per folder."""
    warnings.warn(f"gvae: Numba's cache of gvae's kernels in {folder} is not used ({exc}); they are compiled "
                  "again in every process until it can be locked", RuntimeWarning, stacklevel=4)


class LockedCacheFile:
    """Numba's reader and writer of one kernel's cache files (index and data, in ``folder``), each call
    under the folder's lock: a save (read the index, pick a data file name, write both) is one step for
    every other process, and a load never pairs an index with data files written for another one. Where
    the lock cannot be held, a load finds nothing and a save writes nothing."""

    def __init__(self, files, folder):
        self._files, self._folder = files, folder

    def _lock(self, exclusive):
        try:
            return cache_lock(self._folder, exclusive)
        except OSError as exc:
            _unlocked(self._folder, exc)
            return None

    def load(self, key):
        lock = self._lock(exclusive=False)
        data = None
        if lock is not None:
            with lock:
                data = self._files.load(key)
        if data is None:  # Numba compiles this signature next
            RUNTIME.compilations.missed(key[0], self._folder)
        return data

    def save(self, key, data):
        lock = self._lock(exclusive=True)
        if lock is None:
            return
        with lock:
            self._files.save(key, data)
        RUNTIME.compilations.saved()

    def flush(self):
        lock = self._lock(exclusive=True)
        if lock is None:
            return
        with lock:
            self._files.flush()


def _caching():
    """Whether Numba will find a usable cache for every kernel: ``$NUMBA_CACHE_DIR`` when set (Numba then
    uses nothing else), else the in-tree ``__pycache__`` folders of the kernel folders (the stale cache
    dropped first, :func:`drop_stale_cache`), else the user-wide cache. Warns where there is none."""
    if config.CACHE_DIR:
        possible = writable_folder(config.CACHE_DIR)
    else:
        possible = _IN_TREE or writable_folder(numba_user_cache_dir())
    if not possible:
        warnings.warn("gvae: Numba cannot cache gvae's compiled kernels (neither the package's __pycache__ "
                      f"nor {numba_user_cache_dir()} is writable), so they are compiled again in every process; "
                      "set NUMBA_CACHE_DIR to a writable folder to keep them", RuntimeWarning, stacklevel=3)
        return False
    if not config.CACHE_DIR and _IN_TREE:
        try:
            drop_stale_cache()
        except OSError as exc:  # a lock that cannot be held: no kernel may load what may be stale
            warnings.warn(f"gvae: Numba cannot cache gvae's compiled kernels ({exc}), so they are compiled again "
                          "in every process", RuntimeWarning, stacklevel=3)
            return False
    return True


# Whether Numba caches in the kernel folders' own __pycache__ (checked once: each check writes a file).
_IN_TREE = all(writable_folder(os.path.join(d, "__pycache__")) for d in _FOLDERS)
CACHING = _caching()


def cache_is_cold():
    """Whether gvae's kernels will be compiled in this process although they could be cached: the
    in-tree cache is writable but holds no index file (``*.nbi``, Numba's documented cache format) for
    the kernels yet, as after a fresh install. Where the cache lives elsewhere this is not known: False."""
    if not CACHING or config.CACHE_DIR or not _IN_TREE:
        return False
    return not any(glob.glob(os.path.join(d, "__pycache__", "*_cpu.*.nbi")) for d in _FOLDERS)
