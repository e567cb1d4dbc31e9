"""CUDA twin of :mod:`gauss_kl_cpu` (source: ``gauss_kl.cu``): KL(N(mu, diag sigma^2) || N(0, I)) per
row, fused with its gradient; one warp per row."""
from .backend import register
from .cuda.build import CudaSource, contiguous, grid_for, int32

SOURCE = CudaSource("gauss_kl.cu", ["diag_normal_kl<{T}, true>", "diag_normal_kl<{T}, false>"])


@register("diag_normal_kl", "cuda")
def diag_normal_kl(mu, sigma, dmu, dsigma):
    """KL per row of (M, D) arrays; writes dKL/dmu = mu and dKL/dsigma = sigma - 1/sigma into dmu,
    dsigma unless they have zero rows. Returns (M,)."""
    import cupy
    mu, sigma = cupy.ascontiguousarray(mu), cupy.ascontiguousarray(sigma)  # (the CPU's takes rows apart)
    contiguous("diag_normal_kl", mu, sigma, dmu, dsigma)
    m, d = int32("diag_normal_kl", *mu.shape)
    with mu.device:
        out = cupy.empty(int(m), dtype=mu.dtype)
        if m == 0:
            return out
        want_grad = dmu.shape[0] == m
        fn = SOURCE.function(f"diag_normal_kl<{{T}}, {'true' if want_grad else 'false'}>", mu.dtype)
        fn((grid_for(m, 8, mu),), (256,), (mu, sigma, out, dmu, dsigma, m, d))
    return out
