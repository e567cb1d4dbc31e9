"""Front of the selected inversion of a banded factor (Numba: trace_cpu.py, with selected_inversion_cpu.py and
lockstep_cpu.py; CUDA: trace.cu, trace_cuda.py): the exact trace and diagonal of Sigma = (L L^T)^{-1} and
their gradients, from one recursion."""
import math

from . import trace_cpu  # noqa: F401  (registers the CPU kernels)
from ..backend import array_module, implementation
from .layout import _factor, _read, _verdict, _weights

# The most memory the forward keeps for the gradient: the factors' inverses, F n^2 float64 (a batch of 100
# full factors of n = 256: 52 MB). Past it the gradient inverts each factor again.
KEEP_BYTES = 256 << 20


def _kept(xp, Lc, offs, keep):
    """The (F, n, n) float64 array the forward keeps each factor's inverse in, or None: not asked for, not
    the dense route (:func:`.trace_cpu.band_sigma_keeps_inverse`), or past :data:`KEEP_BYTES`."""
    F, K, n = Lc.shape
    if not keep or F * n * n * 8 > KEEP_BYTES or not implementation("band_sigma_keeps_inverse", Lc)(Lc, offs):
        return None
    return xp.empty((F, n, n))


def _sigma(name, L, offsets, keep, check, per_row):
    """:func:`band_trace_inv` or (``per_row``) :func:`band_diag_inv`, with what they keep when ``keep``."""
    offs, K, n = _factor(name, L, offsets)
    xp = array_module(L)
    F = math.prod(L.shape[:-2])
    Lc = _read(xp, L, (F, K, n))
    out = xp.empty((F, n) if per_row else F, dtype=L.dtype)
    kept = _kept(xp, Lc, offs, keep) if F else None
    if F:
        run = implementation(name, Lc)
        flags = run(Lc, offs, out) if kept is None else run(Lc, offs, out, kept)
        if check:
            _verdict(name, flags, L, offs)
    out = out.reshape(L.shape[:-2] + ((n,) if per_row else ()))
    return (out, kept) if keep else out


def band_trace_inv(L, offsets, *, check=True, keep=False):
    """tr((L L^T)^{-1}) = tr(Sigma), exactly, shape ``L.shape[:-2]``; O(n) per factor for the chain,
    O(n K w) with w = offsets[-1] otherwise (selected inversion over a sliding window of Sigma), with
    O(n K + w^2) float64 of scratch per lane of a lock-step block of 8 factors on the CPU. On the CPU a band
    that fills a quarter of the matrix or more (32 <= n <= 4096; the full family) takes the dense inverse instead,
    O(n^3) in LAPACK's and the BLAS's blocked routines, with two n x n float64 of scratch per thread
    (:mod:`.dense_inverse_cpu`); so do the diagonal and the gradients below.

    ``keep=True`` returns (trace, kept): ``kept`` the factors' inverses where the dense route ran (an (F, n,
    n) float64 array, at most :data:`KEEP_BYTES`; else None), for the gradient's ``kept``, which then
    skips inverting them again. The results are the same bits either way."""
    return _sigma("band_trace_inv", L, offsets, keep, check, False)


def band_diag_inv(L, offsets, *, check=True, keep=False):
    """diag((L L^T)^{-1}) = diag(Sigma), exactly, shape ``L.shape[:-2] + (n,)``: the recursion of
    :func:`band_trace_inv` keeping each Sigma_ii (same cost and scratch; ``keep`` as there)."""
    return _sigma("band_diag_inv", L, offsets, keep, check, True)


def _sigma_grad(name, L, offsets, g, per_row, check, kept):
    """The VJP kernels of the selected inversion: ``g`` one weight per factor (broadcast to
    ``L.shape[:-2]``, the trace's) or, with ``per_row``, one per Sigma_ii (to ``L.shape[:-2] + (n,)``);
    ``kept`` what the forward kept of this L (None: nothing)."""
    offs, K, n = _factor(name, L, offsets)
    xp = array_module(L)
    batch = L.shape[:-2]
    F = math.prod(batch)
    gb = _weights(name, L, g, batch + ((n,) if per_row else ()))
    Lc = _read(xp, L, (F, K, n))
    gc = _read(xp, gb, (F, n) if per_row else (F,))
    out = xp.empty((F, K, n), dtype=L.dtype)
    if F:
        if kept is not None and kept.shape != (F, n, n):
            raise ValueError(f"{name}: kept has shape {kept.shape}, expected {(F, n, n)}: what the forward kept "
                             "of this L (band_trace_inv or band_diag_inv with keep=True), or None")
        run = implementation(name, Lc)
        flags = run(Lc, offs, gc, out) if kept is None else run(Lc, offs, gc, out, kept)
        if check:
            _verdict(name, flags, L, offs, [("g", gc)])
    return out.reshape(L.shape)


def band_trace_inv_grad(L, offsets, g, *, check=True, kept=None):
    """g * d tr((L L^T)^{-1}) / dL on the band, i.e. ``-2 g (Sigma^2 L)`` restricted to the stored
    diagonals, zero in the slots that do not exist; shape of L. ``g`` broadcasts to ``L.shape[:-2]``.

    Reverse mode through the exact recursion of :func:`band_trace_inv`: O(n) per factor for the chain,
    O(n K w) otherwise. Scratch memory on the CPU, outside the chain: the band of Sigma's rows, n (w+1)
    float64 (w+1 rounded up to even) per lane of a lock-step block, plus O(n K + w^2) per lane, one block
    per running thread; a block has 8 lanes (8 factors, padded with the last) while 8 such bands fit in
    256 MiB, else 1 (the factors then run one at a time). A band past 256 MiB on one lane is kept in the
    fewest segments of k rows (m = ceil(n / k) of them) whose (m - 1) w + min(k + w, n) rows fit, at the
    cost of the forward sweep once more over all but the first segment (same result, bitwise); where
    none fits, in those that keep the fewest rows, about 2 sqrt(n w) + w. A thread holds at most
    max(256 MiB, those rows) (n = 10^5, w = 1000: 0.23 GB instead of 0.8; n = 10^6: 0.5 GB instead of 8).
    ``kept``: what :func:`band_trace_inv` (or :func:`band_diag_inv`) kept of this same L with
    ``keep=True``; the factors are then not inverted again (same bits)."""
    return _sigma_grad("band_trace_inv_grad", L, offsets, g, False, check, kept)


def band_diag_inv_grad(L, offsets, g, *, check=True, kept=None):
    """sum_i g_i d Sigma_ii / dL on the band, i.e. ``-2 (Sigma diag(g) Sigma L)`` restricted to the stored
    diagonals, zero in the slots that do not exist; shape of L. ``g`` broadcasts to
    ``L.shape[:-2] + (n,)``. Reverse mode through the recursion of :func:`band_trace_inv_grad`, seeded
    with g_i on each Sigma_ii instead of one g for all: same cost and scratch; ``kept`` as there."""
    return _sigma_grad("band_diag_inv_grad", L, offsets, g, True, check, kept)
