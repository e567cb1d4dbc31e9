"""Conventions shared by the Numba CPU kernels of banded factors (the contract: :mod:`gvae.kernels.band`).

Canonical layouts; the fronts (band/NAME.py, through band/layout.py) bring every call to them:

- ``L``: (F, K, n) C-contiguous, ``L[f, k, i] = L_{i, i - offs[k]}`` of factor f. Slots with
  ``i < offs[k]`` are never read.
- ``offs``: int64 (K,), strictly increasing, ``offs[0] == 0``, ``offs[-1] < n``.
- right-hand sides and results: (S, F, n) C-contiguous, sample-major: ``b[s, f]`` is the s-th vector
  solved with factor f. ``b`` of shape (S, B, n) against ``L`` of shape (B, K, n) is used as it is.
- per-factor results (log-determinant, trace): (F,).

Every kernel writes into ``out`` and returns ``(bad, checksum)``: the number of diagonal entries <= 0
it met, and a float64 sum of its outputs and of the diagonals it read, through which any NaN or inf in
the inputs shows (see ``_checksum``); the wrappers turn them into errors.

Vector work is split over the P = F * S (factor, sample) pairs, factor-major, in chunks that the
driver (driver_cpu) runs serially or in parallel; what depends only on the factor (reciprocal diagonal,
rows scaled by it) is computed once per factor inside a chunk and reused by all its samples. Scratch
buffers are allocated per chunk. Inner loops are branch-free: the edge ``i - offs[k] < 0`` (or
``i + offs[k] >= n``) is handled by splitting loop ranges or by shifted slices, never by a test per
element. In the substitutions the neighbour at offset 1 (present in chain, grid and extended grid) stays
in a register, so the serial dependency per element is one fused multiply-add. ``error_model="numpy"``
drops Python's division-by-zero checks (the diagonal is checked), which lets the reciprocal loops
vectorise. ``fastmath`` is limited to ``contract`` (FMA), plus ``reassoc`` for the checksums.

The exact trace and its gradient (outside the chain) vectorise across factors instead: blocks of
``_TB`` factors run the per-factor recursion in lock-step on explicit block vectors (see the section
on the trace), in chunks of whole blocks; a batch of fewer than ``_TB`` factors runs them one at a
time, on blocks of one lane compiled from the same source.
"""
import numpy as np

from ..cpu.jit import jit

_FMA = {"contract"}
_u = np.uint64
_FMA_REASSOC = {"contract", "reassoc"}  # for the checksums: reordering a sum keeps NaN/inf
# Factors per lock-step block of the exact trace and its gradient, for batches of at least _TB factors
# (see lockstep_cpu).
_TB = 8


# Every kernel also returns (count of diagonal entries <= 0, checksum) where the checksum adds up its
# outputs and the diagonals it read: NaN or inf anywhere in the inputs reaches it (an infinite diagonal
# entry only through the diagonal's own sum, as its reciprocal is 0). Both are vectorised passes over
# data already in L1, so the wrappers validate at no extra pass over memory.

@jit(fastmath=_FMA_REASSOC, error_model="numpy")
def _checksum(v):
    acc = v.dtype.type(0.0)
    for i in range(v.shape[0]):
        acc += v[i]
    return np.float64(acc)


@jit(error_model="numpy")
def _nonpositive(d):
    count = 0
    for i in range(d.shape[0]):
        count += np.int64(d[i] <= 0)
    return count


@jit(fastmath=_FMA, error_model="numpy")
def _flags(L, lo, hi, chk):
    """(count of diagonal entries <= 0, chk plus the diagonals' checksum) of factors lo .. hi-1."""
    bad = 0
    for f in range(lo, hi):
        bad += _nonpositive(L[f, 0])
        chk += _checksum(L[f, 0])
    return bad, chk
