"""Numba CPU kernels: bias + activation fused, forward and backward.

The activation is its integer code in the table of :mod:`activations`. Each kernel holds one loop per activation, so every loop is
branch-free and vectorises; the alternatives do not survive Numba's cache (a jitted function passed as
an argument, or used as a value, makes the kernel uncacheable or breaks the cache index across
processes), and a switch inside the element loop blocks vectorisation. The backward pass needs only
the layer's output y = act(h + b): every supported activation has act'(h) as a function of y.
Transcendentals come from :mod:`vecmath_cpu` (vectorisable, in the array's precision; computed for every
element and then selected, so that the loop stays branch-free).

Each kernel is serial; the registered functions cut large arrays into row blocks for gvae's own
threads (:mod:`.cpu.threads`), a worker running its block as a C entry (:mod:`.cpu.entries`).
"""
import numpy as np

from .activations import CODES
from .arithmetic import sum_axes
from .backend import register
from .cpu import threads
from .cpu.entries import INT, Entry, array, run_blocks
from .cpu.jit import jit
from .cpu.vector_width import wide_vectors
from .vecmath_cpu import FMA, expm1_nonpos, softplus_and_sigmoid, tanh


@jit(error_model="numpy", fastmath=FMA)
def _forward(h, b, code):
    wide_vectors()
    m, n = h.shape
    zero = h.dtype.type(0.0)
    for i in range(m):
        row = h[i]
        if code == 0:
            for j in range(n):
                row[j] += b[j]
        elif code == 1:
            for j in range(n):
                row[j] = max(row[j] + b[j], zero)
        elif code == 2:
            for j in range(n):
                x = row[j] + b[j]
                e = expm1_nonpos(x)
                row[j] = x if x > 0 else e
        elif code == 3:
            for j in range(n):
                row[j] = tanh(row[j] + b[j])
        elif code == 4:
            for j in range(n):
                row[j] = softplus_and_sigmoid(row[j] + b[j])[0]
        else:
            for j in range(n):
                row[j] = softplus_and_sigmoid(row[j] + b[j])[1]


_FORWARD = Entry(_forward, h=array("m", "n"), b=array("n"), code=INT)


@jit(error_model="numpy", fastmath=FMA)
def _backward(g, y, code, gh, gb):
    """gh = g * act'(.) from the output y, and gb (N,) its column sums; for the identity (code 0) a gh of
    no rows asks for the sums of g alone (dL/dh is g itself)."""
    wide_vectors()
    m, n = g.shape
    # Constants in the arrays' dtype: a float64 literal would turn a float32 loop into float64 arithmetic
    # (half the lanes, and conversions: the float32 ELU backward ran at float64's speed).
    zero, one = g.dtype.type(0.0), g.dtype.type(1.0)
    for j in range(n):
        gb[j] = zero
    if code == 0 and gh.shape[0] == 0:
        for i in range(m):
            gi = g[i]
            for j in range(n):
                gb[j] += gi[j]
        return
    for i in range(m):
        gi, yi, out = g[i], y[i], gh[i]
        if code == 0:
            for j in range(n):
                out[j] = gi[j]
        elif code == 1:
            for j in range(n):
                out[j] = gi[j] if yi[j] > zero else zero
        elif code == 2:
            for j in range(n):
                out[j] = gi[j] * (one if yi[j] > zero else yi[j] + one)
        elif code == 3:
            for j in range(n):
                out[j] = gi[j] * (one - yi[j] * yi[j])
        elif code == 4:
            for j in range(n):
                out[j] = gi[j] * -expm1_nonpos(-yi[j])  # y >= 0
        else:
            for j in range(n):
                out[j] = gi[j] * (yi[j] * (one - yi[j]))
        for j in range(n):
            gb[j] += out[j]


_BACKWARD = Entry(_backward, g=array("m", "n"), y=array("m", "n"), code=INT, gh=array("d", "n"), gb=array("n"))


# Seconds per element on one core (measured with ELU: the forward's exponential dominates).
_FORWARD_SECONDS, _BACKWARD_SECONDS = 2e-9, 0.4e-9


@register("bias_act_forward")
def bias_act_forward(h, b, activation):
    """In place: h <- act(h + b[None, :]) for the activation called ``activation``; row blocks on
    gvae's threads."""
    code = CODES[activation]
    run_blocks(_FORWARD, lambda k, lo, hi: (h[lo:hi], b, code), threads.row_blocks(*h.shape, _FORWARD_SECONDS))


@register("bias_act_backward")
def bias_act_backward(g, y, activation, gh):
    """gh <- g * act'(.) from the output y; returns the bias gradient (N,) (per-block sums added). For the
    identity, a gh that is g itself is left as it is: only the sums are computed."""
    code = CODES[activation]
    m, n = g.shape
    parts = threads.row_blocks(m, n, _BACKWARD_SECONDS)
    sums = np.empty((len(parts), n), dtype=g.dtype)  # each block's bias gradient
    alone = gh is g and code == CODES["linear"]
    rows = (lambda lo, hi: gh[:0]) if alone else (lambda lo, hi: gh[lo:hi])
    run_blocks(_BACKWARD, lambda k, lo, hi: (g[lo:hi], y[lo:hi], code, rows(lo, hi), sums[k]), parts)
    return sums[0] if len(parts) == 1 else sum_axes(sums, axis=0)  # (a kernel's sum: a recorded step holds it)
