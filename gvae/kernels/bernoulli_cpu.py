"""Numba CPU kernel: Bernoulli log-likelihood from logits, with its gradient in the same pass."""
import numpy as np
from .jit import jit

from . import threads
from .backend import register
from .native_cpu import array_at, row_address, run_blocks
from .vecmath_cpu import FMA, softplus_and_sigmoid


@jit(error_model="numpy", fastmath={"reassoc", "contract"})
def _sum(v):
    """sum(v) in float64, which LLVM may reassociate: it keeps running sums in vector lanes (float64
    error about 1e-16 per term, far under the float32 terms' own rounding). Eight scalar running sums,
    without reassociation, took 1.13 ms for 6,000 rows of 784 float32 terms on one Zen 5 core; this
    0.19 ms (the evaluation's likelihood over 6,000 rows: 3.2 ms before)."""
    total = 0.0
    for i in range(v.size):
        total += v[i]
    return total


@jit(error_model="numpy", fastmath=FMA)
def _loglik(logits, x, dlogits, first, out, terms):
    """out[i] = sum_j x_j l_ij - softplus(l_ij) over the rows i of ``logits``, row i using x[(first + i) % R],
    and dlogits = x - sigmoid(l) when it has logits' rows; ``terms`` (N,) scratch."""
    m, n = logits.shape
    r = x.shape[0]
    want_grad = dlogits.shape[0] == m
    # The terms in the logits' dtype: each is computed in it, so a float64 scratch held the same values
    # (the row sums are float64 either way, in _sum) but halved the vector lanes: 5.3 against 2.8 ns per
    # element without the gradient, 4.6 against 3.4 with it (float32, one Zen 3 core).
    for i in range(m):
        xi = x[(first + i) % r]
        li = logits[i]
        if want_grad:
            di = dlogits[i]
            for j in range(n):
                sp, sig = softplus_and_sigmoid(li[j])
                terms[j] = xi[j] * li[j] - sp
                di[j] = xi[j] - sig
        else:
            for j in range(n):
                terms[j] = xi[j] * li[j] - softplus_and_sigmoid(li[j])[0]
        out[i] = _sum(terms)


# Seconds per element on one core, as the threads' split counts them (threads.row_blocks, blocks of at
# least MIN_BLOCK_SECONDS): measured 0.5 ns on a Zen 5 core with the gradient (100 x 784 logits: 38-46 us),
# counted as 1 ns because this kernel's blocks pay from about 100 us. In the 2-thread ELBO step the
# 100-row likelihood took 66-72 us split in two against 43-47 whole; the IWAE k = 5 step's 500 rows 125-139
# split against 197 whole (both split at the 5 ns this was, from the kernel's scalar row sums).
_SECONDS = 1e-9


@jit(error_model="numpy")
def _loglik_at(args, dtype):
    """The kernel of the C entry (native_cpu) of :func:`_loglik`: args = (itemsize; the logits' address, rows,
    columns; x's address, rows; dlogits' address, rows (0: no gradient); first; out's address; the
    scratch's address), every array C-ordered."""
    m, n, d = args[2], args[3], args[7]
    _loglik(array_at(args[1], (m, n), dtype), array_at(args[4], (args[5], n), dtype), array_at(args[6], (d, n), dtype),
            args[8], array_at(args[9], m, dtype), array_at(args[10], n, dtype))


@register("bernoulli_loglik")
def bernoulli_loglik(logits, x, dlogits):
    """Row sums of x*l - softplus(l) for logits (M, N) and x (R, N) with M % R == 0 (row i uses
    x[i % R]: S samples per data point share x without a copy). Writes d/dl = x - sigmoid(l) into
    ``dlogits`` (M, N) unless it has zero rows. Softplus and sigmoid in the logits' precision
    (:mod:`vecmath_cpu`), row sums in float64, vectorised; row blocks on gvae's threads."""
    (m, n), size = logits.shape, logits.itemsize
    out = np.empty(m, dtype=logits.dtype)
    grad = dlogits.shape[0] == m
    parts = threads.row_blocks(m, n, _SECONDS)
    scratch = np.empty((len(parts), n), dtype=logits.dtype)  # each block's terms

    def run(k, lo, hi):
        _loglik(logits[lo:hi], x, dlogits[lo:hi] if grad else dlogits, lo, out[lo:hi], scratch[k])

    def args(k, lo, hi):
        rows = hi - lo if grad else 0
        return (size, row_address(logits, lo), hi - lo, n, x.ctypes.data, x.shape[0],
                row_address(dlogits, lo if grad else 0), rows, lo, row_address(out, lo),
                scratch[k].ctypes.data)
    run_blocks(run, _loglik_at, args, parts, (logits, x, dlogits, out, scratch))
    return out
