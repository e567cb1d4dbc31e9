"""Numba CPU kernels: bias + activation fused, forward and backward.

Serial on purpose: they run between OpenBLAS GEMMs, whose worker threads spin for a while after each
product; a second thread pool fighting them for the cores costs more than these loops take.

Activations are integer codes (see ``ACTIVATIONS``); the switch lives in scalar functions that are
loop-invariant in the kernels, so LLVM unswitches it out of the inner loop. The backward pass needs only
the layer's output y = act(h + b): every supported activation has act'(h) as a function of y. All
arithmetic is in the arrays' dtype (float32 data gets float32 maths).
"""
import math

import numpy as np
from numba import njit

from .backend import register

ACTIVATIONS = {"linear": 0, "relu": 1, "elu": 2, "tanh": 3, "softplus": 4, "sigmoid": 5}


@njit(cache=True, inline="always", error_model="numpy")
def expm1_nonpositive(x):
    """e^x - 1 for x <= 0: a Taylor polynomial near 0 (where e^x - 1 cancels), exp elsewhere."""
    one = type(x)(1.0)
    taylor = x * (one + x * (type(x)(0.5) + x * (type(x)(1 / 6) + x * (type(x)(1 / 24)
                                                                      + x * type(x)(1 / 120)))))
    return taylor if x > type(x)(-0.01) else math.exp(x) - one


@njit(cache=True, inline="always", error_model="numpy")
def _act(code, x):
    zero = type(x)(0.0)
    one = type(x)(1.0)
    if code == 1:
        return max(x, zero)
    if code == 2:
        return x if x > zero else expm1_nonpositive(x)
    if code == 3:
        return math.tanh(x)
    if code == 4:
        return max(x, zero) + math.log1p(math.exp(-abs(x)))
    if code == 5:
        e = math.exp(-abs(x))
        return one / (one + e) if x >= zero else e / (one + e)
    return x


@njit(cache=True, inline="always", error_model="numpy")
def _dact(code, y):
    zero = type(y)(0.0)
    one = type(y)(1.0)
    if code == 1:
        return one if y > zero else zero
    if code == 2:
        return one if y > zero else y + one
    if code == 3:
        return one - y * y
    if code == 4:
        return -math.expm1(-y)
    if code == 5:
        return y * (one - y)
    return one


@register("bias_act_forward")
@njit(cache=True, error_model="numpy")
def bias_act_forward(h, b, code):
    """In place: h[i, j] <- act(h[i, j] + b[j]). h (M, N) C-contiguous, b (N,)."""
    m, n = h.shape
    for i in range(m):
        for j in range(n):
            h[i, j] = _act(code, h[i, j] + b[j])


@register("bias_act_backward")
@njit(cache=True, error_model="numpy")
def bias_act_backward(g, y, code, gh):
    """gh <- g * act'(.) from the output y; returns the bias gradient sum_i gh[i, :]."""
    m, n = g.shape
    gb = np.zeros(n, dtype=g.dtype)
    for i in range(m):
        for j in range(n):
            v = g[i, j] * _dact(code, y[i, j])
            gh[i, j] = v
            gb[j] += v
    return gb
