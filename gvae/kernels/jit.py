"""The one Numba decorator of gvae's CPU kernels: ``numba.njit`` with the on-disk cache when it can work.

Numba caches compiled kernels in the package's ``__pycache__`` folders, else in its user-wide cache
(``~/.cache/numba``), else in ``$NUMBA_CACHE_DIR``; with none of them writable, ``cache=True`` makes the
decoration itself fail, and ``import gvae`` with it. This module checks once, at import, whether one of
those places is writable: if so every kernel is cached there, if not the kernels are compiled afresh in
each process (correct, only slower to start) and one warning says how to give Numba a cache folder.
gvae sets no environment variable and changes no Numba setting.
"""
import glob
import os
import tempfile
import warnings

from numba import config, njit

__all__ = ["jit", "CACHING", "cache_is_cold"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def _writable_dir(path):
    """Whether ``path`` exists as a folder (or can be made one) and a file can be created in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _user_cache_dir():
    # Numba's user-wide locator uses the platform's user cache folder (appdirs), appname "numba".
    from numba.misc.appdirs import AppDirs
    return AppDirs(appname="numba", appauthor=False).user_cache_dir


def _caching_possible():
    """Whether Numba will find a writable cache for every kernel: ``$NUMBA_CACHE_DIR`` when set (Numba
    then uses nothing else), else the in-tree ``__pycache__`` folders of both kernel folders, else the
    user-wide cache."""
    if config.CACHE_DIR:
        return _writable_dir(config.CACHE_DIR)
    in_tree = all(_writable_dir(os.path.join(d, "__pycache__")) for d in (_HERE, os.path.join(_HERE, "band")))
    return in_tree or _writable_dir(_user_cache_dir())


CACHING = _caching_possible()
if not CACHING:
    warnings.warn("gvae: Numba cannot cache gvae's compiled kernels (neither the package's __pycache__ "
                  f"nor {_user_cache_dir()} is writable), so they are compiled again in every process; "
                  "set NUMBA_CACHE_DIR to a writable folder to keep them", RuntimeWarning, stacklevel=2)


def cache_is_cold():
    """Whether gvae's kernels will be compiled in this process although they could be cached: the
    in-tree cache is writable but holds no index file (``*.nbi``, Numba's documented cache format) for
    the kernels yet, as after a fresh install. Where the cache lives elsewhere this is not known: False."""
    folders = [os.path.join(d, "__pycache__") for d in (_HERE, os.path.join(_HERE, "band"))]
    if not CACHING or config.CACHE_DIR or not all(_writable_dir(f) for f in folders):
        return False
    return not any(glob.glob(os.path.join(f, "*_cpu.*.nbi")) for f in folders)


def jit(*args, **options):
    """``numba.njit`` with ``cache`` set to :data:`CACHING` (callers may still pass ``cache=False``) and
    ``nogil``, so that gvae's threads (:mod:`threads`) run kernels side by side."""
    options.setdefault("cache", CACHING)
    options.setdefault("nogil", True)
    return njit(*args, **options)
