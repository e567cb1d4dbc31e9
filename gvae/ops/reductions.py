"""Reductions over axes, as in NumPy (``axis=None`` reduces everything), on any device's arrays."""
import math

from .. import kernels
from ..autodiff import defvjp, primitive
from ..kernels import array_module

__all__ = ["sum", "mean", "logsumexp"]


def _axes(axis, ndim):
    """``axis`` (None, an int or a tuple of ints) as a tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in (axis if isinstance(axis, (tuple, list)) else (axis,)))


def _expand(g, shape, axis, keepdims):
    """Broadcast the reduced gradient ``g`` back over the reduced axes of ``shape``."""
    xp = array_module(g)
    if axis is not None and not keepdims:
        g = xp.expand_dims(g, _axes(axis, len(shape)))
    return kernels.broadcast_to(g, shape)


@primitive
def sum(x, axis=None, keepdims=False):  # noqa: A001  (mirrors numpy's name, as docs/reference/api.md asks)
    if x.dtype.kind == "f":
        return kernels.sum_axes(x, axis=axis, keepdims=keepdims)
    return x.sum(axis=axis, keepdims=keepdims)


defvjp(sum, lambda ans, x, axis=None, keepdims=False:
       lambda g: _expand(g, x.shape, axis, keepdims))


def _count(shape, axis):
    """How many entries of an array of ``shape`` each result of a reduction over ``axis`` takes in."""
    return math.prod(shape[a] for a in _axes(axis, len(shape)))


@primitive
def mean(x, axis=None, keepdims=False):
    if x.dtype.kind == "f" and x.dtype.itemsize >= 4:
        # The kernels' sum (accumulated in float64) over the count, divided in the array's dtype.
        return kernels.binary("divide", kernels.sum_axes(x, axis=axis, keepdims=keepdims), _count(x.shape, axis))
    return x.mean(axis=axis, keepdims=keepdims)


defvjp(mean, lambda ans, x, axis=None, keepdims=False:
       lambda g: _expand(kernels.binary("divide", g, _count(x.shape, axis)), x.shape, axis, keepdims))


@primitive
def logsumexp(x, axis=None, keepdims=False):
    """log sum exp(x) along ``axis``, shifted by the maximum so it never overflows."""
    xp = array_module(x)
    m = x.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    out = xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True)) + m
    return out if keepdims else xp.squeeze(out, axis=axis)


defvjp(logsumexp, lambda ans, x, axis=None, keepdims=False:
       lambda g: _expand(g, x.shape, axis, keepdims)
       * array_module(x).exp(x - _expand(ans, x.shape, axis, keepdims)))
