"""CUDA twin of :mod:`logmeanexp_cpu` (source: ``logmeanexp.cu``): log-mean-exp along the middle axis of
an (M, K, N) array and the normalised weights; one warp per (m, n) pair, its lanes along K."""
from .backend import register
from .cuda.build import CudaSource, contiguous, grid_for, int32

SOURCE = CudaSource("logmeanexp.cu", ["log_mean_exp<{T}>"])


def _rows(logw, out, weights):
    """The kernel on the rows of logw (R, K) into out (R,) and weights (R, K), all C-contiguous."""
    rows, k = int32("log_mean_exp", *logw.shape)
    if rows == 0 or k == 0:
        return
    with logw.device:
        SOURCE.function("log_mean_exp<{T}>", logw.dtype)((grid_for(rows, 8, logw),), (256,),
                                                         (logw, out, weights, rows, k))


@register("log_mean_exp", "cuda")
def log_mean_exp(logw, out, weights):
    """For each (m, n) of logw (M, K, N): out[m, n] = log mean_k exp(logw[m, k, n]), weights[m, :, n] =
    softmax(logw[m, :, n]). A pair of all -inf gives -inf and uniform weights; +inf or NaN propagate.
    Where N > 1 the kernel runs on a (M, N, K) copy (its lanes read along K), written back after."""
    contiguous("log_mean_exp", logw, out, weights)
    m, k, n = logw.shape
    if n == 1:
        _rows(logw.reshape(m, k), out.reshape(m), weights.reshape(m, k))
        return
    import cupy
    rows = cupy.ascontiguousarray(logw.transpose(0, 2, 1)).reshape(m * n, k)
    wrows = cupy.empty_like(rows)
    _rows(rows, out.reshape(m * n), wrows)
    weights[...] = wrows.reshape(m, n, k).transpose(0, 2, 1)
