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

Compiling takes minutes on a cold cache, so it is announced (:class:`_Compilations`): when a kernel misses
the cache, one line says what compiles and where it is cached, and when the burst of compilation is over
(no kernel compiling for a second), one line says how many kernels took how long. A cache hit says
nothing. The lines are INFO records of the logger ``gvae.kernels.jit``: where the application configured
logging they go through it (and its levels decide); where it configured none they go to stderr, unless a
level set on a logger of gvae turns INFO off. ``logging.getLogger("gvae").setLevel(logging.WARNING)``
silences them.
"""
import atexit
import contextlib
import glob
import hashlib
import logging
import os
import sys
import threading
import time
import warnings

from numba import config, njit

from .shared_files import file_lock, replace_text, writable_folder
from .numba_compat import compile_cfunc, numba_user_cache_dir, wrap_cache_file, wrap_compile

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


_LOG = logging.getLogger(__name__)
# A burst of compilation is over when no kernel has compiled for this long: the kernels of a training
# step compile one front-end call after another, a few milliseconds of Python apart.
_QUIET_SECONDS = 1.0
# What a cold cache costs, for the first line. Measured: examples/torch_banded_vae.py's first epoch took
# 30.5 s on a cold cache against 0.7 s warm (float32 band kernels, 2-vCPU Xeon, Emerald Rapids); issue 50
# saw 151 s against 10 s on the 2-core Zen 5, and tests/warm_kernels.py's whole set (both dtypes, two
# processes) took 345 s there.
_ESTIMATE = "a training step's kernels take 0.5-3 min on 2 cores"


def _channel():
    """Where the lines go: ``_LOG.info`` where the application configured logging (its levels decide),
    else ``print`` to stderr, or None where a level set on a logger of gvae turns INFO off. Unconfigured,
    Python's logging would drop INFO, and a silent wait of minutes is what the lines are for."""
    if _LOG.hasHandlers():
        return _LOG.info
    if _LOG.manager.disable >= logging.INFO:
        return None
    logger = _LOG
    while logger is not None and logger is not logging.root:
        if logger.level:
            if logger.level > logging.INFO:
                return None
            break
        logger = logger.parent
    return lambda message: print(message, file=sys.stderr, flush=True)


class _Compilations:
    """The announcement of compilation in this process. A compile call of a gvae kernel (:func:`jit`'s
    dispatchers, :func:`compile_entry`) is :meth:`session`, nested ones included; a signature missing from
    the cache (:meth:`missed`) opens a burst, with a line naming the dtype and the cache folder (through
    :func:`_channel`, chosen then for the burst's two lines: pytest's logging, say, gone by exit); each kernel
    written to the cache (:meth:`saved`) is counted; the burst closes :data:`_QUIET_SECONDS` after the last
    outermost session ended with none begun since (a timer thread), or when the process exits before, with
    a line giving the count and the time from the first miss to the end of the last session."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0        # compile calls under way (waiting for Numba's lock included)
        self._start = None     # the burst's first miss (perf_counter), None outside a burst
        self._end = 0.0        # when the last outermost session ended
        self._compiled = 0
        self._say = None       # the burst's channel
        self._timer = None
        self._at_exit = False  # _close_now registered with atexit

    @contextlib.contextmanager
    def session(self):
        with self._lock:
            self._depth += 1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._start is not None:
                    self._end = time.perf_counter()
                    self._timer = threading.Timer(_QUIET_SECONDS, self._close)
                    self._timer.daemon = True  # the process need not wait for it: _close_now says it at exit
                    self._timer.start()

    def missed(self, sig, folder):
        with self._lock:
            if self._start is not None:
                return
            self._start, self._compiled, self._say = time.perf_counter(), 0, _channel()
            first, self._at_exit, say = not self._at_exit, True, self._say
        if first:
            atexit.register(self._close_now)
        # a dispatcher's signature is a tuple of types, a C entry's a Signature (its .args)
        args = getattr(sig, "args", sig)
        dtypes = sorted({str(t.dtype) for t in args if str(getattr(t, "dtype", "")).startswith("float")})
        what = f" for {', '.join(dtypes)}" if dtypes else ""
        if say is not None:
            say(f"gvae: compiling Numba kernels{what} that are not in the cache yet, into {folder} (once, after "
                f"an install or an update of gvae; {_ESTIMATE})")

    def saved(self):
        with self._lock:
            self._compiled += 1

    def _close(self):
        with self._lock:
            if self._depth or self._start is None:  # a session began meanwhile: it closes the burst
                return
            count, seconds, say = self._compiled, self._end - self._start, self._say
            self._start, self._timer = None, None
        if count and say is not None:  # none compiled: the compilation failed, and the error said so
            say(f"gvae: compiled {count} Numba kernel{'s' if count != 1 else ''} in {seconds:.1f} s; "
                "later runs load them from the cache")

    def _close_now(self):
        timer = self._timer
        if timer is not None:
            timer.cancel()
        self._close()


_COMPILATIONS = _Compilations()
if hasattr(os, "register_at_fork"):  # a child starts outside any burst, with a lock nobody holds
    os.register_at_fork(after_in_child=_COMPILATIONS.__init__)


class _LockedCacheFile:
    """Numba's reader and writer of one kernel's cache files (index and data, in ``folder``), each call
    under the folder's lock: a save (read the index, pick a data file name, write both) is one step for
    every other process, and a load never pairs an index with data files written for another one."""

    def __init__(self, files, folder):
        self._files, self._folder = files, folder

    def load(self, key):
        with _cache_lock(self._folder, exclusive=False):
            data = self._files.load(key)
        if data is None:  # Numba compiles this signature next
            _COMPILATIONS.missed(key[0], self._folder)
        return data

    def save(self, key, data):
        with _cache_lock(self._folder, exclusive=True):
            self._files.save(key, data)
        _COMPILATIONS.saved()

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
    are read and written under their folder's lock (:class:`_LockedCacheFile`), and its compilation is
    announced (:class:`_Compilations`). ``@jit`` or ``@jit(**options)``."""
    if fn is None:
        return lambda f: jit(f, **options)
    options.setdefault("cache", CACHING)
    options.setdefault("nogil", True)
    dispatcher = njit(**options)(fn)
    if options["cache"]:
        wrap_cache_file(dispatcher, _LockedCacheFile)
        wrap_compile(dispatcher, _announced)
    return dispatcher


def _announced(compile):
    """A dispatcher's ``compile(sig)`` as one session of :data:`_COMPILATIONS`."""
    def announced(sig):
        with _COMPILATIONS.session():
            return compile(sig)
    return announced


def compile_entry(fn, signature, **options):
    """``fn`` compiled now as a C callback of ``signature`` (Numba's ``cfunc``: ``.address``), cached as
    :func:`jit` caches kernels, under the same lock."""
    with _COMPILATIONS.session():
        return compile_cfunc(fn, signature, _LockedCacheFile if CACHING else None, **options)
