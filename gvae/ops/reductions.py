"""Reductions over axes, as in NumPy (``axis=None`` reduces everything)."""
import numpy as np

from ..autodiff import defvjp, primitive

__all__ = ["sum", "mean", "logsumexp"]


def _expand(g, shape, axis, keepdims):
    """Broadcast the reduced gradient ``g`` back over the reduced axes of ``shape``."""
    if axis is not None and not keepdims:
        axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
        g = np.expand_dims(g, tuple(a % len(shape) for a in axes))
    return np.broadcast_to(g, shape)


def _count(shape, axis):
    if axis is None:
        return int(np.prod(shape))
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    return int(np.prod([shape[a] for a in axes]))


@primitive
def sum(x, axis=None, keepdims=False):  # noqa: A001  (mirrors numpy's name, as docs/api.md asks)
    return np.sum(x, axis=axis, keepdims=keepdims)


defvjp(sum, lambda ans, x, axis=None, keepdims=False:
       lambda g: _expand(g, np.shape(x), axis, keepdims))


@primitive
def mean(x, axis=None, keepdims=False):
    return np.mean(x, axis=axis, keepdims=keepdims)


defvjp(mean, lambda ans, x, axis=None, keepdims=False:
       lambda g: _expand(g / _count(np.shape(x), axis), np.shape(x), axis, keepdims))


@primitive
def logsumexp(x, axis=None, keepdims=False):
    """log sum exp(x) along ``axis``, shifted by the maximum so it never overflows."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


defvjp(logsumexp, lambda ans, x, axis=None, keepdims=False:
       lambda g: _expand(g, np.shape(x), axis, keepdims)
       * np.exp(x - _expand(ans, np.shape(x), axis, keepdims)))
