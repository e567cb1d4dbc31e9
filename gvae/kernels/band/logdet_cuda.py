"""CUDA twin of :mod:`logdet_cpu` (source: ``logdet.cu``): log det L per factor, one warp per factor.
Same canonical layouts, arguments and return values as the Numba kernel (see :mod:`common_cuda`)."""
from ..backend import register
from ..cuda.build import CudaSource, contiguous, grid_for
from .common_cuda import new_flags, sizes, verdict

SOURCE = CudaSource("band/logdet.cu", ["band_logdet<{T}>"])


@register("band_logdet", "cuda")
def band_logdet(L, out):
    """out[f] = sum_i log L[f, 0, i]. Returns (bad, checksum)."""
    F, K, n = sizes("band_logdet", L)
    contiguous("band_logdet", out)
    with L.device:
        flags = new_flags()
        if F and n:
            SOURCE.function("band_logdet<{T}>", L.dtype)(
                (grid_for(F, 4, L),), (128,), (L, out, F, K, n, flags))
    return verdict(flags)
