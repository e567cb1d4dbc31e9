"""Loading the CUDA C sources (``*.cu`` beside their Numba twins) as CuPy RawModules.

Each source is a :class:`CudaSource`: a ``.cu`` file and its kernel *name expressions*, written with
``{T}`` for the float type (``"bias_act_forward<{T}, 2>"``). The first call for a dtype compiles the
file once through ``cupy.RawModule(code=..., options=OPTIONS, name_expressions=[...])`` with every
expression for that dtype, and caches the module and the fetched kernels.

CuPy is imported only inside the functions that need it, so this module (and the thin ``*_cuda.py``
modules that declare their sources here) import without it: :mod:`gvae.kernels.cuda_compile_check` reads
the same declarations to compile every instantiation with ``nvcc`` on a machine with no GPU.

Scalars: CuPy passes a Python float as a C double and an int as a 64-bit integer whatever the kernel
declares, so every scalar argument goes through :func:`scalar` (or ``numpy.int32``/``numpy.int64``) to
the exact type of the kernel's signature.
"""
import functools
import os
import re

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
COMMON_HEADER = "cuda_common.cuh"
OPTIONS = ("--std=c++17",)  # the spelling CuPy itself uses (it adds it when absent)
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
SOURCES = {}  # file name -> CudaSource, filled as the *_cuda modules are imported

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)


def ctype(dtype):
    """The C type name of a float32/float64 dtype."""
    try:
        return CTYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"CUDA kernels take float32 or float64, got {np.dtype(dtype)}") from None


def scalar(dtype, x):
    """``x`` as a NumPy scalar of ``dtype`` (what CuPy needs to pass a ``float`` or ``double``)."""
    return np.dtype(dtype).type(x)


def source_text(filename):
    """The text of ``filename`` with each local ``#include "..."`` replaced by that file's text (once).

    CuPy's on-disk kernel cache is keyed by the source text; pasting the header in makes an edit of
    the header recompile every kernel that uses it."""
    seen = set()

    def expand(name):
        if name in seen:
            return ""
        seen.add(name)
        with open(os.path.join(HERE, name)) as f:
            text = f.read()
        return _INCLUDE.sub(lambda m: f"// ---- {m.group(1)} ----\n" + expand(m.group(1)), text)

    return expand(filename)


class CudaSource:
    """One ``.cu`` file and the name expressions of the kernels fetched from it (``{T}`` = float type)."""

    def __init__(self, filename, expressions):
        if not os.path.exists(os.path.join(HERE, filename)):
            raise FileNotFoundError(f"CUDA source {filename} is missing from {HERE}")
        self.filename = filename
        self.expressions = tuple(expressions)
        self._modules = {}
        self._functions = {}
        SOURCES[filename] = self

    def instantiations(self, ct):
        """The name expressions for the C type ``ct`` ("float" or "double")."""
        return [e.format(T=ct) for e in self.expressions]

    def module(self, dtype):
        """The RawModule for ``dtype``, compiled on first use."""
        ct = ctype(dtype)
        mod = self._modules.get(ct)
        if mod is None:
            import cupy
            mod = cupy.RawModule(code=source_text(self.filename), options=OPTIONS,
                                 name_expressions=self.instantiations(ct))
            self._modules[ct] = mod
        return mod

    def function(self, expression, dtype):
        """The kernel for ``expression`` (one of this source's, with ``{T}``) at ``dtype``."""
        key = (expression, np.dtype(dtype))
        fn = self._functions.get(key)
        if fn is None:
            if expression not in self.expressions:
                raise KeyError(f"{expression!r} is not declared in the CudaSource of {self.filename}")
            fn = self.module(dtype).get_function(expression.format(T=ctype(dtype)))
            self._functions[key] = fn
        return fn


# --------------------------------------------------------------------------------------------------
# Launch configuration
# --------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _sm_count(device_id):
    import cupy
    return int(cupy.cuda.Device(device_id).attributes["MultiProcessorCount"])


def sm_count(array):
    """Streaming multiprocessors of the device holding ``array``."""
    return _sm_count(array.device.id)


def grid_for(work_items, per_block, array, blocks_per_sm=16):
    """Blocks for ``work_items`` items at ``per_block`` items a block, capped at ``blocks_per_sm`` per SM
    (the kernels loop grid-stride over the rest); at least 1."""
    need = -(-int(work_items) // int(per_block))
    return max(1, min(need, blocks_per_sm * sm_count(array)))


def contiguous(name, *arrays):
    """Raise unless every array is C-contiguous (the kernels index raw pointers)."""
    for a in arrays:
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: CUDA kernels need C-contiguous arrays, got one of shape {a.shape} "
                             f"with strides {a.strides}")


def int32(name, *sizes):
    """The sizes as numpy.int32, refusing any that does not fit."""
    out = []
    for s in sizes:
        s = int(s)
        if not 0 <= s < 2**31:
            raise ValueError(f"{name}: size {s} does not fit the kernel's 32-bit index")
        out.append(np.int32(s))
    return out
