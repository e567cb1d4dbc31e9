"""Numba CPU kernel: the MMD^2 V-statistic between two samples with an IMQ or RBF kernel, fused with its
gradient with respect to the first sample; one pass over the pairs, float64 accumulation."""
import numpy as np
from numba import prange

from .backend import register
from .jit import jit


@jit(inline="always")
def _k(r2, rbf, C):
    """(k, dk/d(r^2)) of the IMQ kernel C / (C + r^2) or the RBF kernel exp(-r^2 / C)."""
    if rbf:
        k = np.exp(-r2 / C)
        return k, -k / C
    k = C / (C + r2)
    return k, -k * k / C


@jit(inline="always")
def _row(a, i, x, rbf, C, grad, gi, w):
    """sum_j k(a_i, x_j), and with ``grad`` w * sum_j dk/da_i added into gi (float64, d)."""
    d = a.shape[1]
    total = 0.0
    for j in range(x.shape[0]):
        r2 = 0.0
        for c in range(d):
            t = np.float64(a[i, c]) - np.float64(x[j, c])
            r2 += t * t
        k, dk = _k(r2, rbf, C)
        total += k
        if grad:
            s = 2.0 * w * dk  # d r^2 / d a_i = 2 (a_i - x_j)
            for c in range(d):
                gi[c] += s * (np.float64(a[i, c]) - np.float64(x[j, c]))
    return total


@register("mmd")
@jit(parallel=True, error_model="numpy")
def mmd(z, y, rbf, C, grad):
    """MMD^2 of z (B, d) and y (M, d) as a float64 0-d array; writes dMMD^2/dz into grad (B, d) unless it
    has zero rows. The z-z sum counts each pair twice, so d/dz_i of it is 2 sum_j dk(z_i, z_j)/dz_i."""
    B, d = z.shape
    M = y.shape[0]
    want = grad.shape[0] == B
    rows = max(B, M)
    parts = np.zeros(rows)
    for i in prange(rows):
        gi = np.zeros(d)
        acc = 0.0
        if i < B:
            acc += _row(z, i, z, rbf, C, want, gi, 2.0 / (B * B)) / (B * B)
            acc -= 2.0 * _row(z, i, y, rbf, C, want, gi, -2.0 / (B * M)) / (B * M)
            if want:
                for c in range(d):
                    grad[i, c] = gi[c]
        if i < M:
            acc += _row(y, i, y, rbf, C, False, gi, 0.0) / (M * M)
        parts[i] = acc
    return np.asarray(parts.sum())
