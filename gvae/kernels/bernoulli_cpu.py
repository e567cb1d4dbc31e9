"""Numba CPU kernel: Bernoulli log-likelihood from logits, with its gradient in the same pass."""
import numpy as np

from .backend import register
from .cpu import threads
from .cpu.entries import INT, Entry, array, run_blocks
from .cpu.jit import jit
from .cpu.vector_width import wide_vectors
from .vecmath_cpu import FMA, softplus_and_sigmoid


@jit(error_model="numpy", fastmath={"reassoc", "contract"})
def _sum(v):
    """sum(v) in float64, which LLVM may reassociate: it keeps running sums in vector lanes (float64
    error about 1e-16 per term, far under the float32 terms' own rounding), faster than scalar running
    sums without reassociation."""
    wide_vectors()
    total = 0.0
    for i in range(v.size):
        total += v[i]
    return total


@jit(error_model="numpy", fastmath=FMA)
def _loglik(logits, x, dlogits, first, out, terms):
    """out[i] = sum_j x_j l_ij - softplus(l_ij) over the rows i of ``logits``, row i using x[(first + i) % R],
    and dlogits = x - sigmoid(l) when it has logits' rows; ``terms`` (N,) scratch."""
    wide_vectors()
    m, n = logits.shape
    r = x.shape[0]
    want_grad = dlogits.shape[0] == m
    # The terms in the logits' dtype: each is computed in it, so a float64 scratch held the same values
    # (the row sums are float64 either way, in _sum) but halved the vector lanes, and ran slower.
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
# least MIN_BLOCK_SECONDS): about what the kernel takes with the gradient (1.4 ns at 500 x 784 measured).
_SECONDS = 1e-9

_LOGLIK = Entry(_loglik, logits=array("m", "n"), x=array("r", "n"), dlogits=array("d", "n"), first=INT,
                out=array("m"), terms=array("n"))


@register("bernoulli_loglik")
def bernoulli_loglik(logits, x, dlogits):
    """Row sums of x*l - softplus(l) for logits (M, N) and x (R, N) with M % R == 0 (row i uses
    x[i % R]: S samples per data point share x without a copy). Writes d/dl = x - sigmoid(l) into
    ``dlogits`` (M, N) unless it has zero rows. Softplus and sigmoid in the logits' precision
    (:mod:`vecmath_cpu`), row sums in float64, vectorised; row blocks on gvae's threads."""
    m, n = logits.shape
    out = np.empty(m, dtype=logits.dtype)
    grad = dlogits.shape[0] == m
    parts = threads.row_blocks(m, n, _SECONDS)
    scratch = np.empty((len(parts), n), dtype=logits.dtype)  # each block's terms
    run_blocks(_LOGLIK, lambda k, lo, hi: (logits[lo:hi], x, dlogits[lo:hi] if grad else dlogits, lo, out[lo:hi],
                                           scratch[k]), parts)
    return out
