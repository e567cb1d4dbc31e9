"""Numba CPU kernel: the MMD^2 V-statistic between two samples with an IMQ or RBF kernel, fused with its
gradient with respect to the first sample; one pass over the pairs, float64 accumulation.

The rows are cut into blocks on gvae's own threads (:mod:`gvae.kernels.cpu.threads`), not a ``prange``:
Numba's parallel pool spins after each region and, on a busy machine with few cores, a region can wait a
scheduler tick for a thread that is not running: far longer than the whole call serially."""
import numpy as np

from .backend import register
from .cpu import threads
from .cpu.entries import FLAG, FLOAT, INT, Call, Entry, array, run_blocks
from .cpu.jit import jit

# Seconds per pair and coordinate on one core (measured with the gradient), for the size of the blocks
# handed to the threads.
_SECONDS = 4.5e-9


@jit(inline="always")
def _k(r2, rbf, C):
    """(k, dk/d(r^2)) of the IMQ kernel C / (C + r^2) or the RBF kernel exp(-r^2 / C)."""
    if rbf:
        k = np.exp(-r2 / C)
        return k, -k / C
    k = C / (C + r2)
    return k, -k * k / C


@jit(inline="always")
def _row(a, x, rbf, C, grad, ga, w):
    """sum_j k(a, x_j) for a (d,) float64, and with ``grad`` w * sum_j dk/da added into ga (d,)."""
    d = a.shape[0]
    total = 0.0
    for j in range(x.shape[0]):
        r2 = 0.0
        for c in range(d):
            t = a[c] - x[j, c]
            r2 += t * t
        k, dk = _k(r2, rbf, C)
        total += k
        if grad:
            s = 2.0 * w * dk  # d r^2 / d a = 2 (a - x_j)
            for c in range(d):
                ga[c] += s * (a[c] - x[j, c])
    return total


@jit(error_model="numpy")
def _rows(z, y, rbf, C, grad, lo, hi):
    """The part of MMD^2 that rows [lo, hi) contribute (row i: z_i's pairs, then y_i's pairs with y),
    writing dMMD^2/dz_i into grad unless it has zero rows. The z-z sum counts each pair twice, so
    d/dz_i of it is 2 sum_j dk(z_i, z_j)/dz_i."""
    B, d = z.shape
    M = y.shape[0]
    want = grad.shape[0] == B
    a = np.empty(d)
    ga = np.empty(d)
    acc = 0.0
    for i in range(lo, hi):
        if i < B:
            for c in range(d):
                a[c] = z[i, c]
                ga[c] = 0.0
            acc += _row(a, z, rbf, C, want, ga, 2.0 / (B * B)) / (B * B)
            acc -= 2.0 * _row(a, y, rbf, C, want, ga, -2.0 / (B * M)) / (B * M)
            if want:
                for c in range(d):
                    grad[i, c] = ga[c]
        if i < M:
            for c in range(d):
                a[c] = y[i, c]
            acc += _row(a, y, rbf, C, False, ga, 0.0) / (M * M)
    return acc


@jit
def _total(parts, out):
    """out[0] = the sum of parts[:, 0] (float64, in order), rounded once to out's dtype."""
    acc = 0.0
    for k in range(parts.shape[0]):
        acc += parts[k, 0]
    out[0] = acc


# Each block and the total run as C entries (on a worker, and in a recorded training step).
_ROWS = Entry(_rows, results=1, z=array("B", "d"), y=array("M", "d"), rbf=FLAG, C=FLOAT, grad=array("G", "d"),
              lo=INT, hi=INT)
_TOTAL = Entry(_total, parts=array("P", "one", dtype=np.float64), out=array("o"))


@register("mmd")
def mmd(z, y, rbf, C, grad):
    """MMD^2 of z (B, d) and y (M, d) as a 0-d array of z's dtype (accumulated in float64); writes
    dMMD^2/dz into grad (B, d) unless it has zero rows. Row blocks on gvae's threads, their parts summed in
    order."""
    B, d = z.shape
    M = y.shape[0]
    parts = threads.row_blocks(max(B, M), (B + 2 * M) * d, _SECONDS)
    values, out = np.empty((len(parts), 1)), np.empty(1, z.dtype)
    run_blocks(_ROWS, lambda k, lo, hi: (z, y, rbf, C, grad, lo, hi), parts, values)
    threads.run_here([Call(_TOTAL, (values, out))])
    return out.reshape(())
