"""CUDA twin of :mod:`logmeanexp_cpu` (source: ``logmeanexp.cu``): log-mean-exp over rows and the
normalised weights; one warp per row."""
from .backend import register
from .cuda_build import CudaSource, contiguous, grid_for, int32

SOURCE = CudaSource("logmeanexp.cu", ["log_mean_exp<{T}>"])


@register("log_mean_exp", "cuda")
def log_mean_exp(logw, out, weights):
    """For each row r of logw (R, K): out[r] = log mean_k exp(logw[r, k]), weights[r] = softmax(logw[r]).
    A row of all -inf gives -inf and uniform weights; +inf or NaN propagate."""
    contiguous("log_mean_exp", logw, out, weights)
    rows, k = int32("log_mean_exp", *logw.shape)
    if rows == 0 or k == 0:
        return
    with logw.device:
        SOURCE.function("log_mean_exp<{T}>", logw.dtype)((grid_for(rows, 8, logw),), (256,),
                                                         (logw, out, weights, rows, k))
