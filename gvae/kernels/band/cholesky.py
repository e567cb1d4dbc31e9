"""Front of the banded Cholesky factorisation (Numba: cholesky_cpu.py; CUDA: cholesky.cu, cholesky_cuda.py):
the factor L (P = L L^T) of a symmetric positive definite band matrix, and its gradient.

The Cholesky factor of a band matrix of half-bandwidth w fills in every diagonal 0..w whatever the
stencil of P, so both ``A`` and ``L`` are on the *full band* offsets (0, 1, ..., w) (:func:`full_band`).
"""
import math

import numpy as np

from . import cholesky_cpu  # noqa: F401  (registers the CPU kernels)
from ..backend import array_module, implementation, to_host
from ..checks import same_dtype
from .layout import _factor, _finite, _read, _shape, _verdict


def full_band(w):
    """The offsets (0, 1, ..., w) of a full lower band of half-bandwidth w >= 0."""
    return tuple(range(int(w) + 1))


def _full_band_factor(name, A, offsets, argname):
    """Validate the full-band argument ``argname`` (errors name it: A, or band_cholesky_grad's L); returns
    (offsets as int64, K, n)."""
    offs, K, n = _factor(name, A, offsets, argname)
    if offs.tolist() != list(range(K)):
        raise ValueError(f"{name}: offsets must be the full band (0, 1, ..., w): the Cholesky factor fills in "
                         f"every diagonal up to the largest offset; got {tuple(offs.tolist())} (put the stencil's "
                         f"diagonals into the full band {full_band(offs[-1])} first, zeros elsewhere)")
    return offs, K, n


def _not_positive_definite(name, A, L, offs):
    """Raise for a factorisation that failed: NaN/inf in A's existing slots, else the first row whose
    pivot was not positive (the kernel leaves NaN in L's rows from that one on)."""
    xp = array_module(A)
    for k, o in enumerate(offs.tolist()):
        _finite(name, "A", A[..., k, o:], xp)
    failed = np.isnan(to_host(L[..., 0, :]))  # NaN marks every row from the failing one on (an error path)
    if not failed.any():
        return
    flat = failed.reshape(-1, failed.shape[-1])
    f = int(np.flatnonzero(flat.any(axis=-1))[0])
    row = int(np.argmax(flat[f]))
    where = f" at batch index {tuple(int(i) for i in np.unravel_index(f, A.shape[:-2]))}" if A.ndim > 2 else ""
    raise ValueError(f"{name}: A is not positive definite{where}: the pivot of row {row} (A[{row}, {row}] minus "
                     f"the squares of the factor's entries left of it) is not > 0 "
                     f"({int(flat.any(axis=-1).sum())} of {flat.shape[0]} matrices fail)")


def band_cholesky(A, offsets, *, check=True):
    """The lower Cholesky factor L of a symmetric positive definite band matrix, in band storage.

    ``A`` (*batch, K, n) float32/float64: the lower half of the symmetric matrix, ``A[..., k, i] =
    A_{i, i-k}``, on the full band ``offsets`` = (0, 1, ..., w), w = K - 1 (the slots with i < k are
    ignored); returns ``L`` of the same shape, dtype and offsets with A = L L^T, L_ii > 0 and zeros in the
    slots that do not exist. O(n w^2) per matrix (sums in float64).

    A matrix that is not positive definite (a pivot <= 0) raises ``ValueError`` naming its batch index and
    the first failing row, as does NaN or inf in A, never returning NaN. With ``check=False`` nothing is
    read back: a failing matrix then gets NaN in its rows from the failing one on (for callers
    whose A is positive definite by construction and whose loss is checked anyway)."""
    name = "band_cholesky"
    offs, K, n = _full_band_factor(name, A, offsets, "A")
    xp = array_module(A)
    F = math.prod(A.shape[:-2])
    Ac = _read(xp, A, (F, K, n))
    L = xp.empty((F, K, n), dtype=A.dtype)
    if F:
        bad, chk = implementation(name, Ac)(Ac, L)
        if check and (int(bad) or not math.isfinite(float(chk))):
            _not_positive_definite(name, A, L.reshape(A.shape), offs)
    return L.reshape(A.shape)


def band_cholesky_grad(L, offsets, g, *, check=True):
    """dloss/dA of L = band_cholesky(A) from g = dloss/dL: both (*batch, K, n) on the full band
    ``offsets``, L's dtype; zero in the slots that do not exist.

    A's entries are the stored lower band (each off-diagonal A_ij stands for A_ij and A_ji of the
    symmetric matrix: a caller differentiating a symmetric matrix's two halves gives each half of it).
    Reverse mode through the factorisation's own loop (the band restriction of the rule in Murray,
    "Differentiation of the Cholesky decomposition", 2016): O(n w^2) per matrix, the adjoints accumulated
    in float64 (scratch: a float64 copy of g, one matrix at a time per thread on the CPU, all at once on a
    GPU). Checks as the band kernels: a diagonal entry of L <= 0, NaN or inf in L or g."""
    name = "band_cholesky_grad"
    offs, K, n = _full_band_factor(name, L, offsets, "L")
    _shape(name, g, "g")
    same_dtype(name, L, g)
    if g.shape != L.shape:
        raise ValueError(f"{name}: g must have L's shape {L.shape}, got {g.shape}")
    xp = array_module(L)
    F = math.prod(L.shape[:-2])
    Lc = _read(xp, L, (F, K, n))
    gc = _read(xp, g, (F, K, n))
    gA = xp.empty((F, K, n), dtype=L.dtype)
    if F:
        flags = implementation(name, Lc)(Lc, gc, gA)
        if check:
            _verdict(name, flags, L, offs, [("g", g[..., k, o:]) for k, o in enumerate(offs.tolist())])
    return gA.reshape(L.shape)
