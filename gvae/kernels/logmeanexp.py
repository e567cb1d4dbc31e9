"""Importance-weight reductions: log-mean-exp with its normalised weights."""

from . import logmeanexp_cpu  # noqa: F401  (registers the CPU kernel)
from .backend import array_module, implementation
from .checks import float_array


def log_mean_exp(logw, axis=-1):
    """(log mean_k exp(logw_k), softmax(logw)) along ``axis``, stable for any magnitude.

    Returns the reduced array (``logw.shape`` without ``axis``) and the weights (``logw.shape``),
    both in logw's dtype."""
    float_array("log_mean_exp logw", logw)
    xp = array_module(logw)
    if not -logw.ndim <= axis < logw.ndim:
        raise ValueError(f"log_mean_exp: axis {axis} out of range for shape {logw.shape}")
    if logw.shape[axis] == 0:
        raise ValueError("log_mean_exp: cannot average over an empty axis")
    moved = xp.moveaxis(logw, axis, -1)
    rows = xp.ascontiguousarray(moved.reshape(-1, moved.shape[-1]))
    out = xp.empty(rows.shape[0], dtype=logw.dtype)
    weights = xp.empty_like(rows)
    implementation("log_mean_exp", rows)(rows, out, weights)
    return out.reshape(moved.shape[:-1]), xp.moveaxis(weights.reshape(moved.shape), -1, axis)
