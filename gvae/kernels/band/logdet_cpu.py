"""Numba CPU kernel: log det L = sum_i log L_ii of banded factors."""
import math

import numpy as np

from ..backend import register
from ..cpu.entries import INT, Entry, array
from ..cpu.jit import jit
from .common_cpu import _nonpositive, _u
from .driver_cpu import _PARALLEL_MIN, driver


# --------------------------------------------------------------------------------------------------
# Log-determinant
# --------------------------------------------------------------------------------------------------

@jit(error_model="numpy")
def _logdet_one(d):
    """sum_i log d_i. Numba has no vector log here, so the entries are multiplied in float64 blocks of 8
    and one log is taken per block; a block with an entry outside [1e-30, 1e30] (where the product
    could leave the normal range) falls back to one log per entry."""
    n = d.shape[0]
    acc = 0.0
    i = 0
    while i + 8 <= n:
        blk = d[i:i + 8]
        lo = 1e30
        hi = 1e-30
        prod = 1.0
        for j in range(8):
            v = np.float64(blk[j])
            lo = min(lo, v)
            hi = max(hi, v)
            prod *= v
        if lo >= 1e-30 and hi <= 1e30:
            acc += math.log(prod)
        else:
            for j in range(8):
                acc += math.log(np.float64(blk[j]))
        i += 8
    for j in range(i, n):
        acc += math.log(np.float64(d[_u(j)]))
    return acc


@jit(error_model="numpy")
def _logdet_factors(L, out, lo, hi):
    """out[f] for the factors lo..hi-1."""
    bad = 0
    chk = 0.0
    for f in range(lo, hi):
        d = L[f, 0]
        bad += _nonpositive(d)
        v = _logdet_one(d)
        out[f] = v
        chk += v
    return bad, chk


@jit
def _plan(L, out):
    F, K, n = L.shape
    return F, 1, F * n, _PARALLEL_MIN


# out[f] = sum_i log L[f, 0, i]; L (F, K, n), out (F,).
register("band_logdet")(driver(_plan, Entry(_logdet_factors, results=2, L=array("F", "K", "n"), out=array("F"),
                                             lo=INT, hi=INT)))
