"""General band matrices: the solve by LU factorisation with partial pivoting (LAPACK's gbsv), batched, on
SciPy's banded storage (Numba: banded_lu_cpu.py). The matrix of F systems is ``ab`` (F, l + u + 1, n) with
``ab[f, u + i - j, j] = A_f[i, j]``; the right-hand sides ``b`` (F, n, k)."""
from . import banded_lu_cpu  # noqa: F401  (registers the CPU kernel)
from .backend import implementation
from .banded_lu_cpu import NOT_FINITE_AB, NOT_FINITE_B  # (info's codes, the CUDA kernel's too)


def banded_lu_solve(ab, b, lower, upper, check=True):
    """Overwrites ``b`` (F, n, k) with A_f^-1 b_f, A_f the band matrix ``ab[f]`` (F, l + u + 1, n) of ``lower``
    sub- and ``upper`` super-diagonals; both C-contiguous arrays of one dtype, float32 or float64, on one
    device. Returns ``info`` (F,) int64 on the host: 0 where the system was solved, j + 1 where column j's
    pivot was exactly zero (the matrix is singular and its ``b`` is left as it was), and with ``check``
    NOT_FINITE_AB or NOT_FINITE_B where that system's ab or b holds NaN or inf (left unsolved)."""
    if ab.dtype != b.dtype or ab.dtype.kind != "f" or ab.dtype.itemsize not in (4, 8):
        raise TypeError(f"banded_lu_solve: ab and b must share a dtype, float32 or float64; got {ab.dtype} and "
                        f"{b.dtype}")
    if ab.ndim != 3 or b.ndim != 3 or ab.shape[0] != b.shape[0] or ab.shape[2] != b.shape[1] \
            or ab.shape[1] != lower + upper + 1:
        raise ValueError(f"banded_lu_solve: expected ab (F, {lower + upper + 1}, n) and b (F, n, k), got "
                         f"{ab.shape} and {b.shape}")
    if not (ab.flags.c_contiguous and b.flags.c_contiguous):
        raise ValueError("banded_lu_solve: ab and b must be C-contiguous")
    return implementation("banded_lu_solve", ab, b)(ab, b, lower, upper, check)
