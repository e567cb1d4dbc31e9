"""Numba CPU kernel: KL(N(mu, diag sigma^2) || N(0, I)) per row, fused with its gradient."""
import math

import numpy as np

from .backend import register
from .cpu.jit import jit
from .vecmath_cpu import FMA


@register("diag_normal_kl")
@jit(error_model="numpy", fastmath=FMA)
def diag_normal_kl(mu, sigma, dmu, dsigma):
    """KL_i = 1/2 sum_j (mu^2 + sigma^2 - 1) - sum_j log sigma, rows of (M, D) arrays.

    Writes dKL/dmu = mu and dKL/dsigma = sigma - 1/sigma into dmu, dsigma unless they have zero rows."""
    m, d = mu.shape
    want_grad = dmu.shape[0] == m
    out = np.empty(m, dtype=mu.dtype)
    for i in range(m):
        acc = 0.0
        for j in range(d):
            u = mu[i, j]
            s = sigma[i, j]
            acc += 0.5 * (u * u + s * s - 1.0) - math.log(s)
            if want_grad:
                dmu[i, j] = u
                dsigma[i, j] = s - 1 / s
        out[i] = acc
    return out
