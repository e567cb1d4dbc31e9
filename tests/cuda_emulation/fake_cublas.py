"""A stand-in for libcublas under the emulated CuPy: the entry points gvae's ``gvae.kernels.cuda.cublas`` calls, with
the same arguments (raw device addresses as ints, host pointers to alpha and beta), computed in NumPy
over the emulated device's memory. The GEMM reads and writes its operands through their addresses and
leading dimensions alone, as cuBLAS does, so a wrong operation, leading dimension or pointer reads the
guard bands (NaN) or the wrong elements and the product comes out wrong."""
import ctypes

import numpy as np

from tests import fake_device

_TYPES = {"cublasSgemm_v2": (np.float32, ctypes.c_float), "cublasDgemm_v2": (np.float64, ctypes.c_double)}


def _column_major(ptr, rows, cols, ld, dtype):
    """The column-major (rows, cols) matrix at device address ``ptr`` with leading dimension ``ld``."""
    if ld < max(1, rows):
        raise ValueError(f"emulated cuBLAS: leading dimension {ld} below the {rows} rows")
    item = np.dtype(dtype).itemsize
    nbytes = ((cols - 1) * ld + rows) * item
    buffer = (ctypes.c_char * nbytes).from_address(ptr)
    return np.ndarray((rows, cols), dtype=dtype, buffer=buffer, strides=(item, ld * item))


class FakeCublas:
    """The library: handles are counters; each records the stream and workspace it was given."""

    def __init__(self):
        self.handles = {}
        self.calls = []

    def cublasCreate_v2(self, handle_ref):
        handle = len(self.handles) + 1
        self.handles[handle] = {"stream": None, "workspace": None}
        ctypes.cast(handle_ref, ctypes.POINTER(ctypes.c_void_p))[0] = handle
        return 0

    def cublasSetStream_v2(self, handle, stream):
        self.handles[handle] = {"stream": stream, "workspace": None}  # as cuBLAS: the workspace is reset
        return 0

    def cublasSetWorkspace_v2(self, handle, ptr, size):
        self.handles[handle]["workspace"] = (ptr, size)
        return 0

    def _gemm(self, name, handle, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        if self.handles[handle]["workspace"] is None:
            raise RuntimeError("emulated cuBLAS: a GEMM on a handle without its workspace (a capture would fail)")
        dtype, ctype = _TYPES[name]
        self.calls.append((name, op_a, op_b, m, n, k, lda, ldb, ldc))
        A = _column_major(a, *((m, k) if op_a == 0 else (k, m)), lda, dtype)
        B = _column_major(b, *((k, n) if op_b == 0 else (n, k)), ldb, dtype)
        C = _column_major(c, m, n, ldc, dtype)
        A, B = (A if op_a == 0 else A.T), (B if op_b == 0 else B.T)
        if ctype.from_address(beta).value != 0:
            raise ValueError("emulated cuBLAS: gvae's GEMMs overwrite C (beta = 0)")
        scale = ctype.from_address(alpha).value  # a host pointer: read when called (or captured), as cuBLAS

        def gemm():
            C[...] = scale * (A @ B)  # C is not read, as cuBLAS with beta = 0
        if fake_device.capturing():  # recorded for a graph's launch, with the buffers it reads and writes
            from tests.cuda_emulation.fake_cupy import owners
            keep = owners(a, b, c)
            fake_device.CAPTURED[-1].append(lambda: (keep, gemm()))
        else:
            gemm()
        return 0

    def __getattr__(self, name):
        if name in _TYPES:
            return lambda *args: self._gemm(name, *args)
        raise AttributeError(name)
