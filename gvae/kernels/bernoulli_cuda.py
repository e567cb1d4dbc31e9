"""CUDA twin of :mod:`bernoulli_cpu` (source: ``bernoulli.cu``): Bernoulli log-likelihood from logits,
with its gradient in the same pass; one warp per row."""
from .backend import register
from .cuda.build import CudaSource, contiguous, grid_for, int32

SOURCE = CudaSource("bernoulli.cu", ["bernoulli_loglik<{T}, true>", "bernoulli_loglik<{T}, false>"])


@register("bernoulli_loglik", "cuda")
def bernoulli_loglik(logits, x, dlogits):
    """Row sums of x*l - softplus(l) for logits (M, N) and x (R, N), M % R == 0, row i using x[i % R];
    writes d/dl = x - sigmoid(l) into ``dlogits`` (M, N) unless it has zero rows. Returns (M,)."""
    import cupy
    contiguous("bernoulli_loglik", logits, x, dlogits)
    m, n = int32("bernoulli_loglik", *logits.shape)
    r = int32("bernoulli_loglik", x.shape[0])[0]
    if m and (r == 0 or m % r):
        raise ValueError(f"bernoulli_loglik: {int(m)} logit rows are not a multiple of {int(r)} data rows")
    with logits.device:
        out = cupy.empty(int(m), dtype=logits.dtype)
        if m == 0:
            return out
        want_grad = dlogits.shape[0] == m
        fn = SOURCE.function(f"bernoulli_loglik<{{T}}, {'true' if want_grad else 'false'}>", logits.dtype)
        fn((grid_for(m, 8, logits),), (256,), (logits, x, out, dlogits, m, n, r))
    return out
