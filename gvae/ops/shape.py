"""Shape primitives: reshape, indexing, transpose, concatenation, broadcasting, on any device's arrays."""
from numbers import Integral  # (NumPy's integer scalars are registered as Integral too)

import numpy as np

from .. import kernels
from ..autodiff import defvjp, primitive
from ..kernels import array_module

__all__ = ["reshape", "getitem", "transpose", "concatenate2", "broadcast_to"]


@primitive
def reshape(x, shape):
    return x.reshape(shape)


defvjp(reshape, lambda ans, x, shape: lambda g: g.reshape(x.shape))


def _is_basic(idx):
    """Whether ``idx`` is basic indexing (ints, slices, None, Ellipsis: no element picked twice)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (slice, Integral)) for i in items)


@primitive
def getitem(x, idx):
    """x[idx], basic or advanced indexing; repeated advanced indices accumulate in the gradient."""
    return x[idx]


def _getitem_vjp(ans, x, idx):
    def vjp(g):
        xp = array_module(g)
        out = xp.zeros(x.shape, dtype=g.dtype)
        if _is_basic(idx):
            kernels.copy_into(g, out[idx])
        else:
            xp.add.at(out, idx, g)
        return out
    return vjp


defvjp(getitem, _getitem_vjp)


@primitive
def transpose(x, axes=None):
    """x with its axes permuted by ``axes`` (reversed when None)."""
    return x.transpose() if axes is None else x.transpose(axes)


def _inverse(axes):
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a] = i
    return tuple(inverse)


defvjp(transpose, lambda ans, x, axes=None:
       lambda g: g.transpose() if axes is None else g.transpose(_inverse(axes)))


@primitive
def concatenate2(a, b, axis=-1):
    """concatenate((a, b), axis) for two arrays of equal rank, written by :func:`gvae.kernels.copy_into`
    into one new array (so that a recorded training step holds the copies)."""
    ax = axis % a.ndim
    if a.ndim != b.ndim or a.shape[:ax] + a.shape[ax + 1:] != b.shape[:ax] + b.shape[ax + 1:]:
        raise ValueError(f"concatenate2: shapes {a.shape} and {b.shape} do not join along axis {axis}")
    n, lead = a.shape[ax], (slice(None),) * ax
    out = array_module(a, b).empty(a.shape[:ax] + (n + b.shape[ax],) + a.shape[ax + 1:],
                                   np.result_type(a.dtype, b.dtype))
    kernels.copy_into(a, out[lead + (slice(None, n),)])
    kernels.copy_into(b, out[lead + (slice(n, None),)])
    return out


def _split(first):
    def maker(ans, a, b, axis=-1):
        n = a.shape[axis]
        ax = axis % ans.ndim
        lead = (slice(None),) * ax
        return lambda g: g[lead + (slice(None, n),)] if first else g[lead + (slice(n, None),)]
    return maker


defvjp(concatenate2, _split(True), _split(False))


@primitive
def broadcast_to(x, shape):
    """x broadcast to ``shape``: a view, or a copy while a training step is recorded
    (:func:`gvae.kernels.broadcast_to`)."""
    return kernels.broadcast_to(x, shape)


defvjp(broadcast_to, lambda ans, x, shape: lambda g: g)
