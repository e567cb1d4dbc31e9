"""The one Numba decorator of gvae's CPU kernels: ``numba.njit`` with the on-disk cache when it can work.

Numba caches compiled kernels in the package's ``__pycache__`` folders, else in its user-wide cache
(``~/.cache/numba``), else in ``$NUMBA_CACHE_DIR``; with none of them writable, ``cache=True`` makes the
decoration itself fail, and ``import gvae`` with it. This module checks once, at import, whether one of
those places is writable: if so every kernel is cached there, if not the kernels are compiled afresh in
each process (correct, only slower to start) and one warning says how to give Numba a cache folder.
gvae sets no environment variable and changes no Numba setting.
"""
import os
import tempfile
import warnings

from numba import config, njit

__all__ = ["jit", "CACHING"]

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


def cache_locations():
    """The folders Numba would try for gvae's kernels, in Numba's order of preference."""
    places = [os.path.join(config.CACHE_DIR)] if config.CACHE_DIR else []
    places += [os.path.join(_HERE, "__pycache__"), os.path.join(_HERE, "band", "__pycache__"),
               _user_cache_dir()]
    return places


def _caching_possible():
    places = cache_locations()
    if config.CACHE_DIR:
        return _writable_dir(places[0])
    in_tree = all(_writable_dir(p) for p in places[1:3])
    return in_tree or _writable_dir(places[3])


CACHING = _caching_possible()
if not CACHING:
    warnings.warn("gvae: Numba cannot cache gvae's compiled kernels (neither the package's __pycache__ "
                  f"nor {_user_cache_dir()} is writable), so they are compiled again in every process; "
                  "set NUMBA_CACHE_DIR to a writable folder to keep them", RuntimeWarning, stacklevel=2)


def jit(*args, **options):
    """``numba.njit`` with ``cache`` set to :data:`CACHING` (callers may still pass ``cache=False``)."""
    options.setdefault("cache", CACHING)
    return njit(*args, **options)
