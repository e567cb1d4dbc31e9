"""Importance-weighted reductions: log_mean_exp with the normalised weights as its gradient."""
from .. import kernels
from ..autodiff import defvjp, primitive, value_of
from ..kernels import array_module

__all__ = ["log_mean_exp"]


@primitive
def _attach(logw, value, weights, axis):
    """``value`` (computed by the kernel) as a function of ``logw``, for the tape."""
    return value


defvjp(_attach, lambda ans, logw, value, weights, axis: lambda g: kernels.binary(
    "multiply", array_module(g).expand_dims(g, axis), weights))


def log_mean_exp(logw, axis=-1):
    """(log mean exp of logw along axis, softmax(logw) along axis); d value / d logw = the weights.

    The weights are returned as a plain array (no gradient flows through them)."""
    value, weights = kernels.log_mean_exp(value_of(logw), axis)
    return _attach(logw, value, weights, axis), weights
