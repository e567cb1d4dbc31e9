"""Importance-weight reductions: log-mean-exp with its normalised weights."""

import math

from . import logmeanexp_cpu  # noqa: F401  (registers the CPU kernel)
from .arithmetic import contiguous
from .backend import array_module, implementation
from .checks import float_array


def log_mean_exp(logw, axis=-1):
    """(log mean_k exp(logw_k), softmax(logw)) along ``axis``, stable for any magnitude.

    Returns the reduced array (``logw.shape`` without ``axis``) and the weights (``logw.shape``),
    both in logw's dtype. The kernels see logw as (M, K, N), K along ``axis``: no transposed copy."""
    float_array("log_mean_exp logw", logw)
    xp = array_module(logw)
    if not -logw.ndim <= axis < logw.ndim:
        raise ValueError(f"log_mean_exp: axis {axis} out of range for shape {logw.shape}")
    axis %= logw.ndim
    if logw.shape[axis] == 0:
        raise ValueError("log_mean_exp: cannot average over an empty axis")
    shape = logw.shape
    cube = (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))
    logw = contiguous(logw)
    out = xp.empty((cube[0], cube[2]), dtype=logw.dtype)
    weights = xp.empty(shape, dtype=logw.dtype)
    implementation("log_mean_exp", logw)(logw.reshape(cube), out, weights.reshape(cube))
    return out.reshape(shape[:axis] + shape[axis + 1:]), weights
