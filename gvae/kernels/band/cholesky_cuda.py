"""CUDA twins of :mod:`cholesky_cpu` (source: ``cholesky.cu``): the banded Cholesky factor and its VJP, one
thread per matrix. Same canonical layouts, arguments and return values as the Numba kernels (see
:mod:`common_cuda`)."""
from ..backend import register
from ..cuda.build import CudaSource, contiguous, grid_for
from .common_cuda import new_flags, sizes, verdict

SOURCE = CudaSource("band/cholesky.cu", ["band_cholesky<{T}>", "band_cholesky_grad<{T}>"])


@register("band_cholesky", "cuda")
def band_cholesky(A, L):
    """L[f] = chol(A[f]); A, L (F, K, n) on the full band. Returns (failed matrices, checksum)."""
    F, K, n = sizes("band_cholesky", A)
    contiguous("band_cholesky", L)
    with A.device:
        flags = new_flags()
        if F and n:
            SOURCE.function("band_cholesky<{T}>", A.dtype)((grid_for(F, 64, A),), (64,), (A, L, F, K, n, flags))
    return verdict(flags)


@register("band_cholesky_grad", "cuda")
def band_cholesky_grad(L, g, gA):
    """gA = dloss/dA of L = chol(A) from g = dloss/dL; L, g, gA (F, K, n). Returns (bad, checksum)."""
    import cupy
    F, K, n = sizes("band_cholesky_grad", L)
    contiguous("band_cholesky_grad", g, gA)
    with L.device:
        G = g.astype(cupy.float64)  # a copy: the kernel's adjoint accumulator
        flags = new_flags()
        if F and n:
            SOURCE.function("band_cholesky_grad<{T}>", L.dtype)(
                (grid_for(F, 64, L),), (64,), (L, G, gA, F, K, n, flags))
    return verdict(flags)
