"""CUDA twins of :mod:`dense_linalg_cpu`: cuSOLVER's batched Cholesky factorisation (``cupy.linalg``)
and triangular solves (cuBLAS's ``trsm`` through ``cupyx.scipy.linalg``), one matrix of a batch at a time
for the solves. Same arguments and results as the CPU kernels."""
import numpy as np

from .backend import register


@register("dense_cholesky", "cuda")
def dense_cholesky(A):
    """(L, bad) for A (..., n, n): the batched factorisation; ``bad`` (the flat batch indices of the
    matrices that are not positive definite, their L NaN) found one matrix at a time only when cuSOLVER
    reports a failure."""
    import cupy
    import cupyx
    n = A.shape[-1]
    with A.device:
        flat = cupy.ascontiguousarray(A.reshape(-1, n, n))
        try:
            with cupyx.errstate(linalg="raise"):
                return cupy.linalg.cholesky(flat).reshape(A.shape), []
        except np.linalg.LinAlgError:
            L, bad = cupy.empty_like(flat), []
            for i in range(len(flat)):
                try:
                    with cupyx.errstate(linalg="raise"):
                        L[i] = cupy.linalg.cholesky(flat[i])
                except np.linalg.LinAlgError:
                    L[i] = np.nan
                    bad.append(i)
            return L.reshape(A.shape), bad


@register("dense_solve_triangular", "cuda")
def dense_solve_triangular(L, B, transposed):
    """X with L X = B (or L^T X = B when ``transposed``), L (..., n, n) lower triangular, B (..., n, m)."""
    import cupy
    from cupyx.scipy.linalg import solve_triangular
    n, m = L.shape[-1], B.shape[-1]
    with L.device:
        Ls, Bs = L.reshape(-1, n, n), B.reshape(-1, n, m)
        X = cupy.empty(Bs.shape, dtype=B.dtype)
        for i in range(len(Ls)):
            X[i] = solve_triangular(Ls[i], Bs[i], trans=1 if transposed else 0, lower=True, check_finite=False)
        return X.reshape(B.shape)
