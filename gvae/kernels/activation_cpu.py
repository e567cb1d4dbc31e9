"""Numba CPU kernels: bias + activation fused, forward and backward.

The activation enters a kernel as a scalar Numba function argument, so each activation gets its own
compiled, branch-free and vectorised specialisation (cached like any other signature). The backward
pass needs only the layer's output y = act(h + b): every supported activation has act'(h) as a function
of y. Transcendentals come from :mod:`vecmath_cpu` (vectorisable, float64 inside); tanh is a library
call.

Serial on purpose: these run between OpenBLAS GEMMs, whose worker threads spin for a while after each
product; a second thread pool fighting them for the cores costs more than these loops take.
"""
import math

import numpy as np
from numba import njit

from .backend import register
from .vecmath_cpu import expm1_nonpos, softplus_and_sigmoid


def _scalar(fun):
    return njit(cache=True, inline="always", error_model="numpy")(fun)


# name -> (act(x), act'(x) written in terms of y = act(x)); x, y float64
SCALARS = {
    "linear": (_scalar(lambda x: x), _scalar(lambda y: 1.0)),
    "relu": (_scalar(lambda x: max(x, 0.0)), _scalar(lambda y: 1.0 if y > 0 else 0.0)),
    "elu": (_scalar(lambda x: x if x > 0 else expm1_nonpos(min(x, 0.0))),
            _scalar(lambda y: 1.0 if y > 0 else y + 1.0)),
    "tanh": (_scalar(lambda x: math.tanh(x)), _scalar(lambda y: 1.0 - y * y)),
    "softplus": (_scalar(lambda x: softplus_and_sigmoid(x)[0]), _scalar(lambda y: -expm1_nonpos(-max(y, 0.0)))),
    "sigmoid": (_scalar(lambda x: softplus_and_sigmoid(x)[1]), _scalar(lambda y: y * (1.0 - y))),
}


@njit(cache=True, error_model="numpy")
def _forward(h, b, act):
    """In place: h[i, j] <- act(h[i, j] + b[j]). h (M, N) C-contiguous, b (N,)."""
    m, n = h.shape
    for i in range(m):
        for j in range(n):
            h[i, j] = act(np.float64(h[i, j] + b[j]))


@njit(cache=True, error_model="numpy")
def _backward(g, y, dact, gh):
    """gh <- g * act'(.) from the output y; returns the bias gradient sum_i gh[i, :]."""
    m, n = g.shape
    gb = np.zeros(n, dtype=g.dtype)
    for i in range(m):
        for j in range(n):
            v = g[i, j] * dact(np.float64(y[i, j]))
            gh[i, j] = v
            gb[j] += v
    return gb


@register("bias_act_forward")
def bias_act_forward(h, b, activation):
    """In place: h <- act(h + b[None, :]) for the activation called ``activation``."""
    _forward(h, b, SCALARS[activation][0])


@register("bias_act_backward")
def bias_act_backward(g, y, activation, gh):
    """gh <- g * act'(.) from the output y; returns the bias gradient (N,)."""
    return _backward(g, y, SCALARS[activation][1], gh)
