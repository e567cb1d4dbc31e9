"""Numba CPU kernels: the Cholesky factor of a symmetric positive definite band matrix, and its VJP.

Layouts as in :mod:`common_cpu`, on the full band offsets (0, 1, ..., w), w = K - 1, for the matrix A and
its factor L alike: ``A[f, k, i] = A_{i, i-k}`` (the lower half of the symmetric A), ``L[f, k, i] =
L_{i, i-k}``. Row by row (i = 0 .. n-1), entry by entry (j = i-w .. i):

    s_ij = A_ij - sum_{t = max(0, i-w)}^{j-1} L_it L_jt,   L_ij = s_ij / L_jj (j < i),   L_ii = sqrt(s_ii),

O(n w^2) per factor; the sums are taken in float64, so float32 factors lose only the rounding of their
inputs and outputs. A pivot s_ii that is not > 0 (A not positive definite, or NaN) stops the factor:
its rows from i on are set to NaN, which the front reads back to name the first failing row, and the
factor counts as one ``bad``.
"""
import math

import numpy as np

from ..backend import register
from ..cpu.jit import jit
from .common_cpu import _FMA
from .driver_cpu import _PARALLEL_MIN, driver


@jit(fastmath=_FMA, error_model="numpy")
def _factor_one(A, L):
    """L (K, n) of A (K, n); returns (1 if a pivot failed else 0, checksum of the entries written)."""
    K, n = A.shape
    chk = 0.0
    for k in range(1, K):  # the slots i < k that do not exist: zero rather than whatever was there
        for i in range(min(k, n)):
            L[k, i] = 0.0
    for i in range(n):
        lo = max(0, i - K + 1)
        for j in range(lo, i + 1):
            s = np.float64(A[i - j, i])
            for t in range(lo, j):
                s -= np.float64(L[i - t, i]) * np.float64(L[j - t, j])
            if j < i:
                v = s / np.float64(L[0, j])
            elif s > 0.0:
                v = math.sqrt(s)
            else:
                for m in range(i, n):  # rows i.. (every existing slot) are NaN
                    for k in range(min(K, m + 1)):
                        L[k, m] = np.nan
                return 1, chk
            L[i - j, i] = v
            chk += v
    return 0, chk


@jit(error_model="numpy")
def _factor_range(A, L, lo, hi):
    bad = 0
    chk = 0.0
    for f in range(lo, hi):
        b, c = _factor_one(A[f], L[f])
        bad += b
        chk += c
    return bad, chk


@jit
def _plan(A, L):
    F, K, n = A.shape
    return F, 1, F * n * K * K, _PARALLEL_MIN


# L = chol(A) per factor; A, L (F, K, n) on the full band (0, ..., K-1). Returns (failed factors, checksum).
register("band_cholesky")(driver(_plan, _factor_range))


@jit(fastmath=_FMA, error_model="numpy")
def _grad_one(L, G, gA):
    """Reverse mode through :func:`_factor_one`: G (K, n) float64 holds dloss/dL on entry and is used
    as the adjoint accumulator; gA (K, n) receives dloss/dA (on the stored lower band). The steps are
    undone in the reverse order, so the adjoint of L_ij is complete before its own step is undone:
    L_ij feeds only later entries of row i and later rows."""
    K, n = L.shape
    chk = 0.0
    for k in range(1, K):
        for i in range(min(k, n)):
            gA[k, i] = 0.0
    for i in range(n - 1, -1, -1):
        lo = max(0, i - K + 1)
        for j in range(i, lo - 1, -1):
            ljj = np.float64(L[0, j])
            if j == i:  # L_ii = sqrt(s): ds = dL_ii / (2 L_ii)
                sbar = 0.5 * G[0, i] / ljj
            else:       # L_ij = s / L_jj: ds = dL_ij / L_jj, dL_jj -= dL_ij L_ij / L_jj
                sbar = G[i - j, i] / ljj
                G[0, j] -= sbar * np.float64(L[i - j, i])
            gA[i - j, i] = sbar
            chk += sbar
            # s -= L_it L_jt (for j = i both updates land on L_it: the derivative of L_it^2)
            for t in range(lo, j):
                G[i - t, i] -= sbar * np.float64(L[j - t, j])
                G[j - t, j] -= sbar * np.float64(L[i - t, i])
    return chk


@jit(error_model="numpy")
def _grad_range(L, g, gA, lo, hi):
    F, K, n = L.shape
    G = np.empty((K, n))  # the adjoint accumulator, float64, one per chunk
    bad = 0
    chk = 0.0
    for f in range(lo, hi):
        d = L[f, 0]
        for i in range(n):
            bad += np.int64(d[i] <= 0)
            chk += np.float64(d[i])
        for k in range(K):
            for i in range(n):
                G[k, i] = g[f, k, i]
        chk += _grad_one(L[f], G, gA[f])
    return bad, chk


@jit
def _grad_plan(L, g, gA):
    F, K, n = L.shape
    return F, 1, F * n * K * K, _PARALLEL_MIN


# gA = dloss/dA from L = chol(A) and g = dloss/dL; L, g, gA (F, K, n).
register("band_cholesky_grad")(driver(_grad_plan, _grad_range))
