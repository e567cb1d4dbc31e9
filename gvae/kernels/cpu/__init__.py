"""gvae's CPU runtime: the floor under the Numba kernels of :mod:`gvae.kernels`. It imports nothing of
gvae outside this package but the careful file code of :mod:`gvae.io` (which stands apart); the kernels
build on it.

- :mod:`state`: every piece of process-wide state of the runtime, in one object, reset in a forked child.
- :mod:`jit`: the one Numba decorator of the kernels, and the compilation of C entries;
  :mod:`compile_cache` where Numba caches what they compile and how processes share it;
  :mod:`compilations` the announcement of a compilation (the files several processes share there, with
  their locks, whole replacements and careful reads: :mod:`gvae.io.shared_files`); :mod:`numba_compat` the parts of Numba outside its
  public API.
- :mod:`specialise`: functions compiled in variants from one source (the kernels' templates, the C
  entries' generated code), through one rewrite of a function's code.
- :mod:`threads`: gvae's own threads and the hand-over of a call's pieces to them; :mod:`worker_loop`
  the native loop a worker waits in; :mod:`entries` the kernels a worker calls there as C functions,
  each from one declared argument list.
- :mod:`blas`: the BLAS that NumPy loaded, held to one thread; :mod:`tuning` this machine's measured
  plans.
"""
