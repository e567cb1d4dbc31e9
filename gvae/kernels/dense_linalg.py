"""Dense symmetric positive-definite algebra for the Gaussian-process layers: the Cholesky
factor of a batch of matrices and triangular solves with it. Arrays in, arrays out; the VJPs are in
:mod:`gvae.ops.gp`. CPU kernels only (LAPACK, :mod:`dense_linalg_cpu`): a CuPy array has no kernel here
yet."""
import numpy as np

from . import dense_linalg_cpu  # noqa: F401  (registers the CPU kernels)
from .backend import implementation
from .checks import float_array, same_dtype


def _square(name, what, A):
    float_array(f"{name} {what}", A, 2)
    if A.shape[-1] != A.shape[-2]:
        raise ValueError(f"{name}: {what} must be square matrices (..., n, n), got shape {A.shape}")


def cholesky(A):
    """L (..., n, n) lower triangular with L L^T = A for symmetric positive-definite A (..., n, n) (only
    A's lower triangle is read). A matrix that is not positive definite is a ValueError naming its
    batch index."""
    _square("cholesky", "A", A)
    L, bad = implementation("dense_cholesky", A)(A)
    if bad:
        where = [tuple(int(i) for i in np.unravel_index(k, A.shape[:-2])) for k in bad[:5]]
        raise ValueError(f"cholesky: {len(bad)} of the {int(np.prod(A.shape[:-2], dtype=np.int64))} matrices are not "
                         f"positive definite (batch indices {where}{' ...' if len(bad) > 5 else ''}); add jitter to "
                         "the diagonal or check the kernel's parameters")
    return L


def solve_triangular(L, B, transposed=False):
    """X (..., n, m) with L X = B, or L^T X = B when ``transposed``, for lower-triangular L (..., n, n)
    (its upper triangle is not read) and B (..., n, m) of the same batch shape and dtype."""
    _square("solve_triangular", "L", L)
    float_array("solve_triangular B", B, 2)
    same_dtype("solve_triangular", L, B)
    if B.shape[:-2] != L.shape[:-2] or B.shape[-2] != L.shape[-1]:
        raise ValueError(f"solve_triangular: B of shape {B.shape} does not match L of shape {L.shape} "
                         "(expected (..., n, m) with L's batch shape and n)")
    return implementation("dense_solve_triangular", L, B)(L, B, bool(transposed))
