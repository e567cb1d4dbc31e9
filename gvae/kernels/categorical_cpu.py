"""Numba CPU kernels of :mod:`categorical`: a softmax's log-probability of labels and its gradient, by
rows, in row blocks on gvae's threads (C entries, so that a recorded training step holds them)."""
import math

import numpy as np

from .backend import register
from .cpu import programs, threads
from .cpu.entries import INT, Entry, array, run_blocks
from .cpu.jit import jit

# Seconds per element on one core, for the threads' split: the forward's two exponentials in float64, the
# gradient's product.
_SECONDS, _GRAD_SECONDS = 20e-9, 1e-9


@jit(error_model="numpy")
def _log_prob(logits, labels, probs, out, lo, hi):
    """Rows i in [lo, hi) of logits (M, C), row i labelled labels[i % R]: out[i] = l_y - lse and
    probs[i] = exp(l - lse), lse = max + log sum exp(l - max) in float64."""
    c, r = logits.shape[1], labels.shape[0]
    for i in range(lo, hi):
        li = logits[i]
        top = li[0]
        for j in range(1, c):
            if li[j] > top:
                top = li[j]
        total = 0.0
        for j in range(c):
            total += math.exp(np.float64(li[j]) - top)
        lse = top + math.log(total)
        out[i] = np.float64(li[labels[i % r]]) - lse
        for j in range(c):
            probs[i, j] = math.exp(np.float64(li[j]) - lse)


@jit(error_model="numpy")
def _grad(g, labels, probs, out, lo, hi):
    """out[i, j] = g[i] ([j = y_i] - probs[i, j]) for the rows i in [lo, hi), y_i = labels[i % R]."""
    c, r = probs.shape[1], labels.shape[0]
    for i in range(lo, hi):
        y, gi = labels[i % r], g[i]
        for j in range(c):
            out[i, j] = gi * ((1.0 if j == y else 0.0) - probs[i, j])


_LOG_PROB = Entry(_log_prob, logits=array("m", "c"), labels=array("r", dtype=np.int64), probs=array("m", "c"),
                  out=array("m"), lo=INT, hi=INT)
_GRAD = Entry(_grad, g=array("m"), labels=array("r", dtype=np.int64), probs=array("m", "c"),
              out=array("m", "c"), lo=INT, hi=INT)


def _labels(labels):
    """The labels as contiguous int64 (a copy, which a recording refuses, where they are not)."""
    if labels.dtype == np.int64 and labels.flags.c_contiguous:
        return labels
    programs.unrecorded(f"a copy of the labels ({labels.dtype}{labels.shape}) as int64")
    return np.ascontiguousarray(labels, dtype=np.int64)


@register("categorical_log_prob")
def categorical_log_prob(logits, labels, probs):
    """out (M,) = log softmax(logits)_y by rows, probs (M, C) = softmax(logits); labels (R,), M % R == 0."""
    m, c = logits.shape
    out = np.empty(m, logits.dtype)
    if m:
        y = _labels(labels)
        run_blocks(_LOG_PROB, lambda k, lo, hi: (logits, y, probs, out, lo, hi), threads.row_blocks(m, c, _SECONDS))
    return out


@register("categorical_grad")
def categorical_grad(g, labels, probs, out):
    """out (M, C) = g[:, None] ([c = y] - probs) by rows."""
    m, c = probs.shape
    if m:
        y = _labels(labels)
        run_blocks(_GRAD, lambda k, lo, hi: (g, y, probs, out, lo, hi), threads.row_blocks(m, c, _GRAD_SECONDS))
