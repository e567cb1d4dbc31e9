"""CPU kernel of :mod:`ar_bernoulli`: autoregressive Bernoulli draws, each unit's logit read from the
units drawn before it (Numba; rows in blocks on gvae's threads)."""
import math

from .backend import register
from .cpu import threads
from .cpu.entries import Entry, array, run_blocks
from .cpu.jit import jit


@jit(error_model="numpy")
def _ar_draw(bias, W, u, z):
    """z[r, i] = [u[r, i] < sigmoid(bias[r, i] + sum_{j < i} W[i, j] z[r, j])], unit by unit: the draw of
    an autoregressive layer (W's strictly lower triangle read, in float64 for the sum)."""
    t = z.dtype.type
    for r in range(bias.shape[0]):
        for i in range(bias.shape[1]):
            a = float(bias[r, i])
            for j in range(i):
                if z[r, j] != 0:
                    a += W[i, j]
            z[r, i] = t(1.0) if u[r, i] < 1.0 / (1.0 + math.exp(-a)) else t(0.0)


_AR_DRAW = Entry(_ar_draw, bias=array("m", "n"), W=array("n", "n"), u=array("m", "n"), z=array("m", "n"))


@register("ar_bernoulli_draw")
def ar_bernoulli_draw(bias, W, u, z):
    """In place into z (M, d): :func:`_ar_draw`, the rows in blocks on gvae's threads."""
    n = bias.shape[1]
    run_blocks(_AR_DRAW, lambda k, lo, hi: (bias[lo:hi], W, u[lo:hi], z[lo:hi]),
               threads.row_blocks(bias.shape[0], n * n // 2 + 1, 1e-9))
