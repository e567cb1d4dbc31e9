"""CUDA twin of :mod:`mmd_cpu` (source: ``mmd.cu``): the MMD^2 V-statistic of two samples, fused with its
gradient; one thread per row."""
import numpy as np

from .backend import register
from .cuda.build import CudaSource, contiguous, grid_for, int32

SOURCE = CudaSource("mmd.cu", ["mmd<{T}, false, false>", "mmd<{T}, false, true>", "mmd<{T}, true, false>",
                               "mmd<{T}, true, true>"])


@register("mmd", "cuda")
def mmd(z, y, rbf, C, grad):
    """MMD^2 of z (B, d) and y (M, d) as a float64 0-d device array; writes dMMD^2/dz into grad (B, d)
    unless it has zero rows."""
    import cupy
    contiguous("mmd", z, y, grad)
    B, d = int32("mmd", *z.shape)
    M = int32("mmd", y.shape[0])[0]
    want = grad.shape[0] == B
    with z.device:
        parts = cupy.empty(max(int(B), int(M)), dtype=np.float64)
        scratch = cupy.empty((int(B) if want else 0, int(d)), dtype=np.float64)  # the gradient in float64
        fn = SOURCE.function(f"mmd<{{T}}, {'true' if rbf else 'false'}, {'true' if want else 'false'}>", z.dtype)
        fn((grid_for(parts.size, 128, z),), (128,), (z, y, B, M, d, np.float64(C), parts, grad, scratch))
        return parts.sum()
