"""CUDA twin of :mod:`ar_bernoulli_cpu` (source: ``ar_bernoulli.cu``): one warp per row."""
from .backend import register
from .cuda.build import CudaSource, contiguous, grid_for, int32

SOURCE = CudaSource("ar_bernoulli.cu", ["ar_bernoulli_draw<{T}>"])


@register("ar_bernoulli_draw", "cuda")
def ar_bernoulli_draw(bias, W, u, z):
    """In place into z (M, d): the autoregressive draws of ``ar_bernoulli.cu``."""
    contiguous("ar_bernoulli_draw", bias, W, u, z)
    m, n = int32("ar_bernoulli_draw", *bias.shape)
    if m == 0 or n == 0:
        return
    with bias.device:
        SOURCE.function("ar_bernoulli_draw<{T}>", bias.dtype)((grid_for(m, 8, bias),), (256,), (bias, W, u, z, m, n))
