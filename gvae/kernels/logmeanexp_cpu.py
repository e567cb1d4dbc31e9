"""Numba CPU kernel: log-mean-exp along the middle axis of an (M, K, N) array and the normalised weights,
one pass for the maximum and one for the sum and the weights. Serial (an OpenMP region here left its
threads spinning on the core the next GEMM needed); large calls run in blocks of (m, n) pairs on gvae's
threads, through its C entry, so that a training step that calls it can be recorded
(:mod:`.cpu.programs`)."""
import math

import numpy as np

from .backend import register
from .cpu import threads
from .cpu.entries import INT, Entry, array, run_blocks
from .cpu.jit import jit
from .vecmath_cpu import FMA


@jit(error_model="numpy", fastmath=FMA)
def _log_mean_exp(logw, out, weights, lo, hi):
    """For each pair t = m N + n in [lo, hi) of logw (M, K, N): out[m, n] = log(mean_k exp(logw[m, k, n]))
    and weights[m, :, n] = softmax(logw[m, :, n]). A pair of all -inf gives out = -inf and uniform weights;
    +inf or NaN propagate."""
    _, k, n_cols = logw.shape
    for t in range(lo, hi):
        m, n = t // n_cols, t % n_cols
        x, w = logw[m], weights[m]
        top = -np.inf
        for j in range(k):
            top = max(top, x[j, n])
        if not math.isfinite(top):
            out[m, n] = top
            for j in range(k):
                w[j, n] = 1.0 / k if top == -np.inf else math.nan
            continue
        s = 0.0
        for j in range(k):
            e = math.exp(x[j, n] - top)
            w[j, n] = e
            s += e
        inv = 1.0 / s
        for j in range(k):
            w[j, n] *= inv
        out[m, n] = top + math.log(s) - math.log(k)


_LOG_MEAN_EXP = Entry(_log_mean_exp, logw=array("m", "k", "n"), out=array("m", "n"), weights=array("m", "k", "n"),
                      lo=INT, hi=INT)


@register("log_mean_exp")
def log_mean_exp(logw, out, weights):
    """:func:`_log_mean_exp` over all pairs of the C-contiguous (M, K, N) ``logw`` into ``out`` (M, N) and
    ``weights`` (M, K, N), in blocks of pairs on gvae's threads (the seconds per element given to
    row_blocks are many: the exponential is a library call)."""
    m, k, n = logw.shape
    run_blocks(_LOG_MEAN_EXP, lambda part, lo, hi: (logw, out, weights, lo, hi),
               threads.row_blocks(m * n, k, 10e-9))
