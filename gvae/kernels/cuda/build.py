"""Loading the CUDA C sources (``*.cu`` beside their Numba twins) as CuPy RawModules.

Each source is a :class:`CudaSource`: a ``.cu`` file (path relative to gvae/kernels, ``band/trace.cu``
in a subfolder), C++ declarations generated from Python tables (the ``prelude``, e.g.
:func:`enum_text` of the activation codes), and its kernel *name expressions*, written with ``{T}`` for
the float type (``"bias_act_forward<{T}, 2>"``). The first call for a dtype compiles
:meth:`CudaSource.text` once through ``cupy.RawModule(code=..., options=OPTIONS, name_expressions=[...])``
with every expression for that dtype, and caches the module and the fetched kernels.

CuPy is imported only inside the functions that need it, and neither this module nor the thin
``*_cuda.py`` modules that declare their sources here import CuPy, Numba or a ``*_cpu.py`` module: the
repository's ``tools/cuda_compile_check.py`` compiles the very same text with ``nvcc`` on a machine with
no GPU.

Scalars: CuPy passes a Python float as a C double and an int as a 64-bit integer whatever the kernel
declares, so every scalar argument goes through :func:`scalar` (or ``numpy.int32``/``numpy.int64``) to
the exact type of the kernel's signature.
"""
import functools
import os
import re

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # gvae/kernels: the sources' root
OPTIONS = ("--std=c++17",)  # the spelling CuPy itself uses (it adds it when absent)
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
SOURCES = {}  # path relative to HERE -> CudaSource, filled as the *_cuda modules are imported

_INCLUDE = re.compile(r'[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*')


def ctype(dtype):
    """The C type name of a float32/float64 dtype."""
    try:
        return CTYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"CUDA kernels take float32 or float64, got {np.dtype(dtype)}") from None


def scalar(dtype, x):
    """``x`` as a NumPy scalar of ``dtype`` (what CuPy needs to pass a ``float`` or ``double``)."""
    return np.dtype(dtype).type(x)


def enum_text(name, codes):
    """C++ for ``enum name {...}`` in namespace gvae from ``codes`` ({lower-case name: int}), members
    upper-cased: ``{"relu": 1}`` gives ``RELU = 1``. Lets a Python table be the only list of the codes."""
    members = ", ".join(f"{key.upper()} = {int(code)}" for key, code in codes.items())
    return f"namespace gvae {{\nenum {name} {{ {members} }};\n}}  // namespace gvae\n"


def _resolve(name, includer):
    """Path (relative to gvae/kernels) of ``#include "name"`` met in ``includer``: the includer's folder
    first, then gvae/kernels itself (as ``nvcc -I gvae/kernels`` would search)."""
    for candidate in (os.path.join(os.path.dirname(includer), name), name):
        candidate = os.path.normpath(candidate)
        if os.path.exists(os.path.join(HERE, candidate)):
            return candidate.replace(os.sep, "/")
    raise FileNotFoundError(f'{includer}: #include "{name}" is neither beside it nor in {HERE}')


def source_text(filename, prelude=""):
    """``prelude`` followed by the text of ``filename`` (relative to gvae/kernels) with each local
    ``#include "..."`` replaced by that file's text (once per file), as one self-contained translation unit.

    CuPy's on-disk kernel cache is keyed by the source text, so pasting the headers in makes an edit of
    a header recompile every kernel that uses it. ``#line`` directives keep the compilers' messages
    pointing at the real files and lines."""
    seen = set()

    def expand(path):
        if path in seen:
            return ""
        seen.add(path)
        with open(os.path.join(HERE, path)) as f:
            lines = f.read().splitlines()
        out = [f'#line 1 "{path}"']
        for number, line in enumerate(lines, 1):
            match = _INCLUDE.fullmatch(line)
            if match is None:
                out.append(line)
            else:
                out += [expand(_resolve(match.group(1), path)), f'#line {number + 1} "{path}"']
        return "\n".join(out)

    head = f'#line 1 "<generated prelude of {filename}>"\n{prelude}' if prelude else ""
    return head + expand(filename) + "\n"


class CudaSource:
    """One ``.cu`` file (relative to gvae/kernels), the generated C++ put before it, and the name
    expressions of the kernels fetched from it (``{T}`` = float type)."""

    def __init__(self, filename, expressions, prelude=""):
        if not os.path.exists(os.path.join(HERE, filename)):
            raise FileNotFoundError(f"CUDA source {filename} is missing from {HERE}")
        self.filename = filename
        self.expressions = tuple(expressions)
        self.prelude = prelude
        self._modules = {}
        self._functions = {}
        SOURCES[filename] = self

    def text(self):
        """The translation unit compiled for this source, here and by the compile check alike."""
        return source_text(self.filename, self.prelude)

    def instantiations(self, ct):
        """The name expressions for the C type ``ct`` ("float" or "double")."""
        return [e.format(T=ct) for e in self.expressions]

    def module(self, dtype):
        """The RawModule for ``dtype``, compiled on first use."""
        ct = ctype(dtype)
        mod = self._modules.get(ct)
        if mod is None:
            import cupy
            mod = cupy.RawModule(code=self.text(), options=OPTIONS,
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


@functools.lru_cache(maxsize=None)
def _memory_bytes(device_id):
    import cupy
    return int(cupy.cuda.runtime.getDeviceProperties(device_id)["totalGlobalMem"])


def memory_bytes(array):
    """Global memory, in bytes, of the device holding ``array``."""
    return _memory_bytes(array.device.id)


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
