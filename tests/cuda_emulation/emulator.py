"""Builds a CUDA source with cuda_host.h into a host shared library and launches its kernels on NumPy
buffers through ctypes.

The library is compiled once per (source, name expressions, header, flags, compiler) and cached in
``$GVAE_EMU_CACHE`` (default ``~/.cache/gvae-emu``), written through a temporary file and ``os.replace``
under a file lock, so that test processes running side by side share it. Each name expression gets two
C entry points: the launcher and the kernel's signature, which :meth:`Kernel.launch` checks every
argument against as CuPy would pass it (CuPy converts nothing: a Python int arrives as a 64-bit integer).
"""
import ctypes
import fcntl
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "cuda_host.h")
# -w: the sources' `#pragma unroll` and the like mean nothing to g++
FLAGS = ("-std=c++17", "-O1", "-shared", "-fPIC", "-fvisibility=hidden", "-w")
_DYNAMIC_SHARED = re.compile(r"extern\s+__shared__\s+(\w+)\s+(\w+)\s*\[\s*\]\s*;")
_EXPORT = 'extern "C" __attribute__((visibility("default")))'
# parameter letter -> (dtype a pointer's array must have, ctypes type of a scalar)
_TYPES = {"f": (np.float32, ctypes.c_float), "d": (np.float64, ctypes.c_double), "i": (np.int32, ctypes.c_int32),
          "q": (np.int64, ctypes.c_int64), "?": (np.bool_, ctypes.c_bool)}
_LETTER = {np.dtype(t): c for c, (t, _) in _TYPES.items()}
_C_NAME = {"f": "float", "d": "double", "i": "int", "q": "long long", "?": "bool"}


def compiler():
    """The C++ compiler ($CXX or g++) as a path, or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


def unavailable():
    """Why the emulator cannot run here, or None when it can."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the CUDA emulator's fiber switch is x86-64 only (this is {platform.machine()})"
    if compiler() is None:
        return "no C++ compiler (g++ or $CXX) to build the CUDA emulator"
    return None


@functools.lru_cache(maxsize=None)
def cache_dir():
    """$GVAE_EMU_CACHE or ~/.cache/gvae-emu, created; a private temporary folder of this process when
    that cannot be written (a read-only home: the libraries are then built once per process)."""
    folder = os.environ.get("GVAE_EMU_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gvae-emu")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="gvae-emu-")


def translation_unit(code, expressions):
    """The C++ compiled for ``code``: the header, the source (its dynamic shared array pointed at the
    emulator's buffer) and one launcher and one signature function per name expression."""
    lines = [f'#include "{HEADER}"', _DYNAMIC_SHARED.sub(r"\1* const \2 = GVAE_DYNAMIC_SHARED(\1);", code),
             '#line 1 "<gvae-emu launchers>"']
    for i, e in enumerate(expressions):
        lines += [f"{_EXPORT} int gvae_emu_launch_{i}(const long long* cfg, void** args) "
                  f"{{ return gvae_emu::launch(&{e}, cfg, args); }}",
                  f"{_EXPORT} const char* gvae_emu_signature_{i}() "
                  f"{{ static char s[256]; return gvae_emu::signature(&{e}, s); }}"]
    lines.append(f"{_EXPORT} const char* gvae_emu_error() {{ return gvae_emu::emu().error; }}")
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=None)
def _version(cxx):
    return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout


def build(code, expressions):
    """Path of the shared library for ``code`` and its name expressions, compiled now unless cached."""
    cxx = compiler()
    text = translation_unit(code, expressions)
    with open(HEADER) as f:
        header = f.read()
    key = hashlib.sha256("\0".join([header, text, " ".join(FLAGS), _version(cxx)]).encode()).hexdigest()[:32]
    folder = cache_dir()
    path = os.path.join(folder, f"{key}.so")
    if os.path.exists(path):
        return path
    with open(os.path.join(folder, f"{key}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be compiling the same library
        if os.path.exists(path):
            return path
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(fd)
        try:
            done = subprocess.run([cxx, *FLAGS, "-x", "c++", "-", "-o", tmp], input=text, capture_output=True,
                                  text=True)
            if done.returncode:
                raise RuntimeError(f"g++ could not compile the emulated CUDA source:\n{done.stderr[-6000:]}")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


class Kernel:
    """One kernel of a loaded library: ``launch(grid, block, args, shared_mem)`` on NumPy arrays."""

    def __init__(self, lib, index, name):
        self.name = name
        self._launch = getattr(lib, f"gvae_emu_launch_{index}")
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [ctypes.POINTER(ctypes.c_longlong), ctypes.POINTER(ctypes.c_void_p)]
        signature = getattr(lib, f"gvae_emu_signature_{index}")
        signature.restype = ctypes.c_char_p
        text = signature().decode()
        self.signature = text.split(",") if text else []
        self._error = lib.gvae_emu_error
        self._error.restype = ctypes.c_char_p

    def _value(self, k, code, a):
        """ctypes storage of argument ``k`` for a parameter of type ``code``, after CuPy's rules."""
        where = f"{self.name}, argument {k}"
        if isinstance(a, np.ndarray):
            letter = _LETTER.get(a.dtype)
            if code != f"p{letter}":
                raise TypeError(f"{where}: a {a.dtype} array passed where the kernel takes {_c_type(code)}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{where}: a non-contiguous array (the kernel indexes a raw pointer)")
            return ctypes.c_void_p(a.ctypes.data)
        if isinstance(a, np.generic):
            letter = _LETTER.get(a.dtype)
        elif isinstance(a, bool):
            letter = "?"
        elif isinstance(a, int):
            letter = "q"   # CuPy passes a Python int as a 64-bit integer
        elif isinstance(a, float):
            letter = "d"   # and a Python float as a double
        else:
            raise TypeError(f"{where}: unsupported argument type {type(a).__name__}")
        if letter != code:
            raise TypeError(f"{where}: a {_c_type(letter)} passed where the kernel takes {_c_type(code)} "
                            "(CuPy would pass its bytes unconverted)")
        return _TYPES[code][1](a.item() if isinstance(a, np.generic) else a)

    def launch(self, grid, block, args, shared_mem=0):
        if len(args) != len(self.signature):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(self.signature)} parameters")
        values = [self._value(k, code, a) for k, (code, a) in enumerate(zip(self.signature, args))]
        pointers = (ctypes.c_void_p * max(1, len(values)))(*[ctypes.addressof(v) for v in values])
        cfg = (ctypes.c_longlong * 7)(*_dim3(grid), *_dim3(block), int(shared_mem))
        if self._launch(cfg, pointers):
            raise RuntimeError(f"emulated kernel {self.name}: {self._error().decode()}")


def _c_type(code):
    """'pf' -> 'float*', 'i' -> 'int' (None, for a NumPy type no kernel takes, -> 'another type')."""
    if code is None:
        return "another type"
    return _C_NAME[code[-1]] + ("*" if code.startswith("p") else "")


def _dim3(d):
    d = (d,) if isinstance(d, (int, np.integer)) else tuple(d)
    return [int(x) for x in d] + [1] * (3 - len(d))


class Library:
    """A source compiled with its name expressions: ``kernel(expression)``."""

    def __init__(self, code, expressions):
        self.expressions = list(expressions)
        self._lib = ctypes.CDLL(build(code, self.expressions))
        self._kernels = {}

    def kernel(self, expression):
        if expression not in self.expressions:
            raise KeyError(f"{expression!r} is not among the name expressions {self.expressions}")
        if expression not in self._kernels:
            self._kernels[expression] = Kernel(self._lib, self.expressions.index(expression), expression)
        return self._kernels[expression]
