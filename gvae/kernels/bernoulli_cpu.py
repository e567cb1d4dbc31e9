"""Numba CPU kernel: Bernoulli log-likelihood from logits, with its gradient in the same pass.

x l - softplus(l) = x l - max(l, 0) - log(1 + e), e = exp(-|l|) in [0, 1]. The last term's sum over a
row is taken as the log of one product of the factors 1 + e, in float64 (where 1 + e keeps e down to
1e-16; :func:`_row_total`): a log1p for each element (a division and a series) cost more than the
exponential before it.
"""
import math

import numpy as np

from .backend import register
from .cpu import threads
from .cpu.entries import INT, Entry, array, run_blocks
from .cpu.jit import jit
from .cpu.vector_width import wide_vectors
from .vecmath_cpu import FMA, exp_and_sigmoid, exp_nonpos

_RUN = 256
_SCALE = 2.0 ** _RUN


@jit(error_model="numpy", fastmath={"reassoc", "contract"})
def _row_total(terms, e):
    """sum_j terms_j - log(1 + e_j) for terms and e (N,), every e_j in [0, 1], in float64, LLVM free to
    reassociate (running sums and products in vector lanes): the terms summed, the logs taken as the log
    of one product: runs of _RUN factors (each run's product, and its lanes' partial products, at most
    2^_RUN), the running product brought back under 2^_RUN by exact powers of two, one log."""
    wide_vectors()
    total = 0.0
    product = 1.0
    halvings = 0
    for lo in range(0, e.size, _RUN):
        # Slices of the run: LLVM vectorised the loop over range(lo, min(lo + _RUN, e.size)) too, but it
        # ran 3-4 times slower.
        run, run_terms = e[lo:lo + _RUN], terms[lo:lo + _RUN]
        p = 1.0
        for j in range(run.size):
            total += run_terms[j]
            p *= 1.0 + np.float64(run[j])
        product *= p  # < 2^(2 _RUN)
        if product >= _SCALE:
            product *= 1.0 / _SCALE
            halvings += 1
    return total - (math.log(product) + halvings * (_RUN * math.log(2.0)))


@jit(error_model="numpy", fastmath=FMA)
def _loglik(logits, x, dlogits, first, out, terms, exps):
    """out[i] = sum_j x_j l_ij - softplus(l_ij) over the rows i of ``logits``, row i using x[(first + i) % R],
    and dlogits = x - sigmoid(l) when it has logits' rows; ``terms`` (x l - max(l, 0)) and ``exps``
    (exp(-|l|)), (N,) each, scratch for a row."""
    wide_vectors()
    m, n = logits.shape
    r = x.shape[0]
    want_grad = dlogits.shape[0] == m
    zero = logits.dtype.type(0.0)
    # The terms in the logits' dtype: each is computed in it, so a float64 scratch held the same values
    # (the row sums are float64 either way, in _row_total) but halved the vector lanes, and ran slower.
    for i in range(m):
        xi = x[(first + i) % r]
        li = logits[i]
        if want_grad:
            di = dlogits[i]
            for j in range(n):
                e, sigmoid = exp_and_sigmoid(li[j])
                terms[j] = xi[j] * li[j] - max(li[j], zero)
                exps[j] = e
                di[j] = xi[j] - sigmoid
        else:
            for j in range(n):
                e = exp_nonpos(-abs(li[j]))
                terms[j] = xi[j] * li[j] - max(li[j], zero)
                exps[j] = e
        out[i] = _row_total(terms, exps)


# Seconds per element on one core, as the threads' split counts them (threads.row_blocks, blocks of at
# least MIN_BLOCK_SECONDS): about what the kernel takes with the gradient (1.0 ns at 500 x 784 measured).
_SECONDS = 1e-9

_LOGLIK = Entry(_loglik, logits=array("m", "n"), x=array("r", "n"), dlogits=array("d", "n"), first=INT,
                out=array("m"), terms=array("n"), exps=array("n"))


@register("bernoulli_loglik")
def bernoulli_loglik(logits, x, dlogits):
    """Row sums of x*l - softplus(l) for logits (M, N) and x (R, N) with M % R == 0 (row i uses
    x[i % R]: S samples per data point share x without a copy). Writes d/dl = x - sigmoid(l) into
    ``dlogits`` (M, N) unless it has zero rows. exp(-|l|) and the sigmoid in the logits' precision
    (:mod:`vecmath_cpu`), row sums in float64, vectorised; row blocks on gvae's threads."""
    m, n = logits.shape
    out = np.empty(m, dtype=logits.dtype)
    grad = dlogits.shape[0] == m
    parts = threads.row_blocks(m, n, _SECONDS)
    scratch = np.empty((len(parts), n), dtype=logits.dtype)  # each block's terms
    exps = np.empty((len(parts), n), dtype=logits.dtype)     # and its exp(-|l|)
    run_blocks(_LOGLIK, lambda k, lo, hi: (logits[lo:hi], x, dlogits[lo:hi] if grad else dlogits, lo, out[lo:hi],
                                           scratch[k], exps[k]), parts)
    return out
