"""Numba CPU kernel: KL(N(mu, diag sigma^2) || N(0, I)) per row, fused with its gradient."""
import math

import numpy as np

from .backend import register
from .cpu import threads
from .cpu.entries import Call, Entry, array
from .cpu.jit import jit
from .vecmath_cpu import FMA


@jit(error_model="numpy", fastmath=FMA)
def _kl(mu, sigma, dmu, dsigma, out):
    """out_i = 1/2 sum_j (mu^2 + sigma^2 - 1) - sum_j log sigma over the rows of (M, D) arrays (whose rows
    may lie apart); dKL/dmu = mu and dKL/dsigma = sigma - 1/sigma into dmu, dsigma unless they have zero
    rows."""
    m, d = mu.shape
    want_grad = dmu.shape[0] == m
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


_KL = Entry(_kl, mu=array("m", "d", strided=True), sigma=array("m", "d", strided=True), dmu=array("g", "d"),
            dsigma=array("g", "d"), out=array("m"))


@register("diag_normal_kl")
def diag_normal_kl(mu, sigma, dmu, dsigma):
    """KL per row of (M, D) arrays (see :func:`_kl`); returns (M,)."""
    out = np.empty(mu.shape[0], dtype=mu.dtype)
    threads.run_here([Call(_KL, (mu, sigma, dmu, dsigma, out))])
    return out
