"""gvae's own cuBLAS GEMM (through ctypes), which a CUDA graph can record.

CuPy's matmul sets its cuBLAS handle's stream through a check that refuses a stream being captured
(CuPy 14: "calling cuBLAS API during stream capture is currently unsupported"), although cuBLAS itself
records its GEMMs in a capture when the handle works in a workspace it was given (the cuBLAS guide,
"CUDA Graphs Support"). So gvae keeps one cuBLAS handle per GPU with a workspace of its own, points it
at CuPy's current stream before a call (and gives the workspace back, which ``cublasSetStream`` resets),
and calls ``cublasSgemm_v2``/``cublasDgemm_v2`` itself: the same call eagerly and under capture, so a
replayed step computes what the eager one does, bit for bit.

Row-major arrays are column-major transposes: C = A B (M, N) is C^T = B^T A^T in cuBLAS's terms, and an
operand that is C-contiguous (rows padded or not) or F-contiguous (a transposed view) is passed as it
lies, with its leading dimension and the matching operation; any other strides are copied once.

The library is the one CuPy loaded (found in the process's maps), else the dynamic loader's.
"""
import ctypes
import ctypes.util
import glob
import importlib
import os
import sys
import threading

import numpy as np

WORKSPACE_BYTES = 32 << 20  # the cuBLAS guide's advice for Hopper; more than earlier GPUs need
_OP_N, _OP_T = 0, 1
_GEMM = {np.dtype(np.float32): ("cublasSgemm_v2", ctypes.c_float),
         np.dtype(np.float64): ("cublasDgemm_v2", ctypes.c_double)}
_SCALARS = {dtype: (ct(1.0), ct(0.0)) for dtype, (_, ct) in _GEMM.items()}  # alpha, beta (host pointers)

_library = None  # the loaded libcublas (tests/cuda_emulation installs its NumPy stand-in here)
_handles = {}    # GPU ordinal -> _Handle
_lock = threading.Lock()


def _find():
    """The path of the libcublas CuPy uses, else one the loader or CUDA's folders give; RuntimeError
    naming what was tried."""
    for module in ("cupy_backends.cuda.libs.cublas", "cupy.cuda.cublas"):  # either loads CuPy's libcublas
        try:
            importlib.import_module(module)
            break
        except ImportError:
            continue
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if os.path.basename(path).startswith("libcublas.so"):
                    return path
    except OSError:  # no /proc: not Linux
        pass
    names = [ctypes.util.find_library("cublas"), "libcublas.so.13", "libcublas.so.12", "libcublas.so"]
    folders = [os.path.join(os.environ.get("CUDA_PATH", "/usr/local/cuda"), "lib64")]
    folders += [os.path.join(p, "nvidia", sub, "lib") for p in sys.path for sub in ("cublas", "cu13", "cu12")]
    for folder in folders:
        names += sorted(glob.glob(os.path.join(folder, "libcublas.so*")), reverse=True)
    for name in filter(None, names):
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    raise RuntimeError(f"gvae's CUDA matmul needs libcublas (CUDA's BLAS): none of {', '.join(filter(None, names))} "
                       f"loads; install CUDA's cuBLAS (the CUDA toolkit, or the nvidia-cublas wheel of your CUDA)")


def library():
    """The cuBLAS library (loaded once, its GEMM entry points typed)."""
    global _library
    with _lock:
        if _library is None:
            lib = ctypes.CDLL(_find())
            vp, i = ctypes.c_void_p, ctypes.c_int
            lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
            lib.cublasSetStream_v2.argtypes = [vp, vp]
            lib.cublasSetWorkspace_v2.argtypes = [vp, vp, ctypes.c_size_t]
            for name, _ in _GEMM.values():
                getattr(lib, name).argtypes = [vp, i, i, i, i, i, vp, vp, i, vp, i, vp, vp, i]
            _library = lib
        return _library


def _check(status, what):
    if status != 0:
        raise RuntimeError(f"cuBLAS {what} failed with status {status}")


class _Handle:
    """One GPU's cuBLAS handle, its workspace (device memory outside CuPy's pool, so that no allocator
    installed around a call owns it) and the stream it was last pointed at."""

    def __init__(self, lib, cupy):
        handle = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self.handle = handle.value
        self.workspace = cupy.cuda.Memory(WORKSPACE_BYTES)
        self.stream = None
        self.lock = threading.Lock()

    def on_stream(self, lib, stream):
        """Point the handle at ``stream`` (a cudaStream_t as an int), with its own workspace again."""
        if stream != self.stream:
            _check(lib.cublasSetStream_v2(self.handle, stream), "cublasSetStream")
            _check(lib.cublasSetWorkspace_v2(self.handle, self.workspace.ptr, WORKSPACE_BYTES), "cublasSetWorkspace")
            self.stream = stream


def _handle(lib, cupy, device):
    with _lock:
        h = _handles.get(device.id)
        if h is None:
            with device:
                h = _handles[device.id] = _Handle(lib, cupy)
        return h


def operand(x):
    """(operation, leading dimension) of the 2-D array ``x`` read as cuBLAS's column-major operand of a
    row-major product (:func:`gemm`), or None when its strides are neither row- nor column-major."""
    item = x.itemsize
    rows, cols = x.shape
    s0, s1 = x.strides
    if (cols <= 1 or s1 == item) and (rows <= 1 or (s0 % item == 0 and s0 >= cols * item)):
        return _OP_N, max(cols, 1) if rows <= 1 else s0 // item
    if (rows <= 1 or s0 == item) and (cols <= 1 or (s1 % item == 0 and s1 >= rows * item)):
        return _OP_T, max(rows, 1) if cols <= 1 else s1 // item
    return None


def gemm(a, b, out):
    """out = a @ b on CuPy's current stream: a (M, K), b (K, N) float32 or float64 CuPy arrays of one
    dtype and GPU (any strides), out (M, N) C-contiguous of that dtype. Returns out."""
    import cupy
    lib = library()
    (M, K), N = a.shape, b.shape[1]
    if M == 0 or N == 0:
        return out
    if K == 0:
        out[...] = 0
        return out
    ops = []
    for x in (b, a):
        op = operand(x)
        if op is None:
            x = cupy.ascontiguousarray(x)
            op = operand(x)
        ops.append((x, *op))
    (b, op_b, ld_b), (a, op_a, ld_a) = ops
    name, _ = _GEMM[np.dtype(a.dtype)]
    alpha, beta = _SCALARS[np.dtype(a.dtype)]
    h = _handle(lib, cupy, a.device)
    with h.lock:
        h.on_stream(lib, cupy.cuda.get_current_stream().ptr)
        _check(getattr(lib, name)(h.handle, op_b, op_a, N, M, K, ctypes.addressof(alpha), b.data.ptr, ld_b,
                                  a.data.ptr, ld_a, ctypes.addressof(beta), out.data.ptr, N), name)
    return out
