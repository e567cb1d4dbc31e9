"""Banded lower-triangular factors: solves, products, log-determinant, exact diagonal and trace of the
inverse, and the Cholesky factorisation of a band matrix that gives them.

Storage (docs/reference/api.md, section 1): ``offsets`` is a tuple of strictly increasing ints starting at 0 and
``L`` has shape ``(*batch, K, n)`` with ``L[..., k, i] = L_{i, i - offsets[k]}``; the slots with
``i < offsets[k]`` are ignored whatever they hold. The main diagonal is strictly positive.

Right-hand sides ``b`` of shape ``(*lead, n)`` broadcast with ``batch`` by NumPy rules. The broadcast
result axes split into *factor* axes (where ``L`` has the full size) and *sample* axes (where ``L`` has
size 1 or no axis at all); the kernels see ``L`` as (F, K, n) without any copy and the right-hand sides
as (S, F, n), samples first, so ``L (B, K, n)`` with ``b (S, B, n)`` needs no copy of either.

Every function checks its arguments and raises ``ValueError`` naming the problem (``TypeError`` for a
dtype other than float32/float64 or mixed dtypes, as everywhere in :mod:`gvae.kernels`). The scans for a
non-positive diagonal and for NaN/inf cost no extra pass over memory: the kernels count diagonal
entries <= 0 and return a checksum of their outputs and of the diagonals, which any NaN or inf in the
inputs reaches; only when that flags a problem are the inputs scanned, to name the culprit (a result
that overflowed from finite inputs is returned as it is). ``check=False`` ignores those flags.

Per algorithm, as everywhere in :mod:`gvae.kernels`: the front ``NAME.py`` (checks, layout, dispatch) beside
its Numba kernels ``NAME_cpu.py`` and its CUDA source ``NAME.cu`` with ``NAME_cuda.py``; ``layout.py`` holds
what the fronts share.
"""
from .cholesky import band_cholesky, band_cholesky_grad, full_band
from .layout import offsets_problem, validate_offsets
from .logdet import band_logdet, band_logdet_grad
from .product import band_matvec, band_matvec_t, band_outer
from .substitution import band_solve, band_solve_t
from .trace import band_diag_inv, band_diag_inv_grad, band_trace_inv, band_trace_inv_grad

__all__ = ["band_solve_t", "band_solve", "band_matvec_t", "band_matvec", "band_logdet", "band_trace_inv",
           "band_diag_inv", "band_outer", "band_logdet_grad", "band_trace_inv_grad", "band_diag_inv_grad",
           "band_cholesky", "band_cholesky_grad", "full_band", "validate_offsets", "offsets_problem"]
