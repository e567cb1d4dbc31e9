"""CUDA twin of :mod:`banded_lu_cpu` (source: ``banded_lu.cu``): the banded LU solve, one thread a system."""
import numpy as np

from .backend import register
from .cuda.build import CudaSource, contiguous, grid_for, int32

SOURCE = CudaSource("banded_lu.cu", ["banded_lu_solve<{T}>"])


@register("banded_lu_solve", "cuda")
def banded_lu_solve(ab, b, lower, upper, check):
    """As :func:`banded_lu_cpu.banded_lu_solve`: ``b`` (F, n, k) overwritten with A_f^-1 b_f; ``info`` (F,)
    int64 on the host."""
    import cupy
    contiguous("banded_lu_solve", ab, b)
    count, n, k = b.shape
    with b.device:
        work = cupy.empty((count, 2 * lower + upper + 1, n), ab.dtype)
        piv = cupy.empty((count, n), np.int64)
        info = cupy.zeros(count, np.int64)
        if count:
            SOURCE.function("banded_lu_solve<{T}>", ab.dtype)(
                (grid_for(count, 64, b),), (64,),
                (ab, b, work, piv, info, *int32("banded_lu_solve", lower, upper, int(bool(check)), n, k),
                 np.int64(count)))
        return cupy.asnumpy(info)
