"""Numba CPU kernel: log det L = sum_i log L_ii of banded factors."""
import math

import numpy as np
from numba import prange

from ..backend import register
from ..jit import jit
from .common_cpu import _PARALLEL_MIN, _nonpositive, _u


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


@register("band_logdet")
@jit(parallel=True, error_model="numpy")
def band_logdet(L, out):
    """out[f] = sum_i log L[f, 0, i]. Returns (bad, checksum)."""
    F, K, n = L.shape
    bad = 0
    chk = 0.0
    if F * n < _PARALLEL_MIN:
        for f in range(F):
            d = L[f, 0]
            bad += _nonpositive(d)
            out[f] = _logdet_one(d)
            chk += out[f]
    else:
        for f in prange(F):
            d = L[f, 0]
            bad += _nonpositive(d)
            v = _logdet_one(d)
            out[f] = v
            chk += v
    return bad, chk
