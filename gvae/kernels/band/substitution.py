"""Front of the substitutions with a banded factor (Numba: substitution_cpu.py; CUDA: substitution.cu,
substitution_cuda.py): x with L^T x = b and with L x = b."""
from . import substitution_cpu  # noqa: F401  (registers the CPU kernels)
from .layout import _vector_op


def band_solve_t(L, offsets, b, *, check=True):
    """x with L^T x = b (backward substitution); x has the broadcast shape of b and L's batch.

    With b ~ N(0, I), x ~ N(0, (L L^T)^{-1}): the reparameterised sample of a banded-precision family.
    A chain factor (diagonal 2, L_{i,i-1} = 1; the first slot of row k = 1 is never read):

    >>> import numpy as np
    >>> from gvae import kernels
    >>> L = np.array([[2.0, 2.0, 2.0], [0.0, 1.0, 1.0]])
    >>> kernels.band_solve_t(L, (0, 1), np.array([2.0, 3.0, 2.0]))
    array([0.5, 1. , 1. ])
    """
    return _vector_op("band_solve_t", L, offsets, b, "b", check)


def band_solve(L, offsets, b, *, check=True):
    """x with L x = b (forward substitution)."""
    return _vector_op("band_solve", L, offsets, b, "b", check)
