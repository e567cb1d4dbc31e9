"""Numba CPU kernel: log-mean-exp over the rows of a matrix and the normalised weights, in one pass
for the maximum and one for the sum and the weights. Serial (an OpenMP region here left its threads
spinning on the core the next GEMM needed); large calls run in row blocks on gvae's threads."""
import math

import numpy as np

from .backend import register
from .cpu import threads
from .cpu.jit import jit
from .vecmath_cpu import FMA


@jit(error_model="numpy", fastmath=FMA)
def _log_mean_exp(logw, out, weights):
    """For each row r of logw (R, K): out[r] = log(mean_k exp(logw[r, k])) and weights[r] =
    softmax(logw[r]). A row of all -inf gives out = -inf and uniform weights; +inf or NaN propagate."""
    rows, k = logw.shape
    for r in range(rows):
        m = -np.inf
        for j in range(k):
            m = max(m, logw[r, j])
        if not math.isfinite(m):
            out[r] = m
            for j in range(k):
                weights[r, j] = 1.0 / k if m == -np.inf else math.nan
            continue
        s = 0.0
        for j in range(k):
            e = math.exp(logw[r, j] - m)
            weights[r, j] = e
            s += e
        inv = 1.0 / s
        for j in range(k):
            weights[r, j] *= inv
        out[r] = m + math.log(s) - math.log(k)


@register("log_mean_exp")
def log_mean_exp(logw, out, weights):
    """:func:`_log_mean_exp` in row blocks on gvae's threads (the seconds per element given to
    row_blocks are many: the exponential is a library call)."""
    threads.over_blocks(lambda lo, hi: _log_mean_exp(logw[lo:hi], out[lo:hi], weights[lo:hi]),
                        threads.row_blocks(*logw.shape, 10e-9))
