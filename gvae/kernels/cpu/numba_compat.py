"""The parts of Numba that gvae's kernels use from outside Numba's public API, in one place, so that a
Numba release that moves them breaks this file alone (setup.py caps Numba below its next minor release
for them: each name has had this path since before Numba 0.59, the oldest setup.py allows; run with
0.68.1).

- :func:`tuple_setitem` (``tup``, ``i``, ``value``) -> a copy of a homogeneous tuple with item i replaced,
  inside a jitted function: the lock-step sweeps of the exact trace keep their per-lane state in tuples
  so that LLVM holds it in registers.
- :func:`to_fixed_tuple` (``array``, ``n``) -> the first n items of a 1-D array as a tuple of
  compile-time length n (n a literal): substitution_cpu unrolls its inner loop over the band's offsets.
- :func:`item_pointer` (``context``, ``builder``, ``array type``, ``array``, ``index``) -> the LLVM
  pointer to an item of a 1-D array, inside an intrinsic's code generation (``cgutils.get_item_pointer``):
  the worker loop's atomic loads and stores.
- :func:`declared_function` (``module``, ``function type``, ``name``) -> the LLVM function ``name`` of
  that type in ``module``, declared there when it is not yet (``cgutils.get_or_insert_function``): the
  worker loop's spin-wait hint.
- :func:`numba_user_cache_dir` -> the user-wide folder where Numba caches compiled functions when the
  package's own ``__pycache__`` is not writable (Numba's cache locators read it through its vendored
  appdirs, appname "numba").
- :func:`wrap_cache_file` (``dispatcher``, ``wrap``) -> replaces the object through which a dispatcher made
  with ``cache=True`` reads and writes its cache files (``dispatcher._cache._cache_file``, a
  ``numba.core.caching.IndexDataCacheFile`` with ``load(key)``, ``save(key, data)`` and ``flush()``) by
  ``wrap(that object, the folder of its files)``: compile_cache puts a lock around it.
- :func:`wrap_compile` (``dispatcher``, ``wrap``) -> replaces the dispatcher's ``compile(sig)``, which Numba
  calls (as ``self.compile``) for each signature not yet compiled in the process, top-level or nested in
  another kernel's compilation, by ``wrap(compile)``: jit.py tells when a burst of compilation ends.
- :func:`compiled_for` (``dispatcher``, ``signature``) -> the dispatcher's function for the tuple of Numba
  types ``signature``, loaded from the cache or compiled the first time (``Dispatcher.compile``, which returns
  the compile result's ``entry_point``): a callable that converts its arguments to those types without
  typing them again, so an array whose type differs from the signature's only in its layout (C-contiguous
  where the signature says 'A') runs the same machine code. It checks no array's dtype or number of axes
  beyond its item size: the caller's arguments must have the signature's.
- :func:`compile_cfunc` (``pyfunc``, ``signature``, ``wrap``, ``**options``) -> ``pyfunc`` compiled as a C
  callback (``numba.core.ccallback.CFunc``: what ``numba.cfunc`` makes, with ``.address``), its cache files
  (when ``wrap`` is given) read and written through ``wrap`` as a dispatcher's are: the C entries.
"""
from numba.core import cgutils
from numba.cpython.unsafe.tuple import tuple_setitem
from numba.np.unsafe.ndarray import to_fixed_tuple

__all__ = ["tuple_setitem", "to_fixed_tuple", "item_pointer", "declared_function", "numba_user_cache_dir",
           "wrap_cache_file", "wrap_compile", "compiled_for", "compile_cfunc"]


def item_pointer(context, builder, aryty, ary, idx):
    return cgutils.get_item_pointer(context, builder, aryty, context.make_array(aryty)(context, builder, ary),
                                    [idx])


def declared_function(module, fnty, name):
    return cgutils.get_or_insert_function(module, fnty, name)


def numba_user_cache_dir():
    from numba.misc.appdirs import AppDirs
    return AppDirs(appname="numba", appauthor=False).user_cache_dir


def wrap_cache_file(dispatcher, wrap):
    cache = dispatcher._cache
    cache._cache_file = wrap(cache._cache_file, cache.cache_path)


def wrap_compile(dispatcher, wrap):
    dispatcher.compile = wrap(dispatcher.compile)


def compiled_for(dispatcher, signature):
    return dispatcher.compile(signature)


def compile_cfunc(pyfunc, signature, wrap=None, **options):
    from numba.core import sigutils
    from numba.core.ccallback import CFunc
    compiled = CFunc(pyfunc, sigutils.normalize_signature(signature), locals={}, options=options)
    if wrap is not None:
        compiled.enable_caching()
        wrap_cache_file(compiled, wrap)
    compiled.compile()
    return compiled
