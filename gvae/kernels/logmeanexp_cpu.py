"""Numba CPU kernel: log-mean-exp over the rows of a matrix and the normalised weights, in one pass
for the maximum and one for the sum and the weights."""
import math

import numpy as np
from numba import prange
from .jit import jit

from .backend import register


@register("log_mean_exp")
@jit(parallel=True, error_model="numpy")
def log_mean_exp(logw, out, weights):
    """For each row r of logw (R, K): out[r] = log(mean_k exp(logw[r, k])) and weights[r] =
    softmax(logw[r]). A row of all -inf gives out = -inf and uniform weights; +inf or NaN propagate."""
    rows, k = logw.shape
    for r in prange(rows):
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
