"""CPU kernels of dense symmetric positive-definite algebra (the Gaussian-process layers' matrices):
LAPACK through NumPy and SciPy, one matrix of a batch at a time for the triangular solves."""
import numpy as np
from scipy.linalg import solve_triangular as _solve_triangular

from .backend import register


@register("dense_cholesky")
def dense_cholesky(A):
    """(L, bad) for A (..., n, n): L lower triangular with L L^T = A where each matrix is positive
    definite; ``bad`` the flat indices (into the batch) of the matrices that are not (their L is NaN)."""
    batch, n = A.shape[:-2], A.shape[-1]
    flat = A.reshape(-1, n, n)
    L = np.empty_like(flat)
    bad = []
    for i, a in enumerate(flat):
        try:
            L[i] = np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            L[i] = np.nan
            bad.append(i)
    return L.reshape(batch + (n, n)), bad


@register("dense_solve_triangular")
def dense_solve_triangular(L, B, transposed):
    """X with L X = B (or L^T X = B when ``transposed``) for lower-triangular L (..., n, n) and B
    (..., n, m), the batch axes equal."""
    n, m = L.shape[-1], B.shape[-1]
    Ls, Bs = L.reshape(-1, n, n), B.reshape(-1, n, m)
    X = np.empty(Bs.shape, dtype=B.dtype)
    for i in range(len(Ls)):
        X[i] = _solve_triangular(Ls[i], Bs[i], lower=True, trans=1 if transposed else 0, check_finite=False)
    return X.reshape(B.shape)
