"""Shape primitives: reshape, indexing, transpose, concatenation."""
import numpy as np

from ..autodiff import defvjp, primitive

__all__ = ["reshape", "getitem", "transpose", "concatenate2", "broadcast_to"]


@primitive
def reshape(x, shape):
    return np.reshape(x, shape)


defvjp(reshape, lambda ans, x, shape: lambda g: np.reshape(g, np.shape(x)))


def _is_basic(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in items)


@primitive
def getitem(x, idx):
    """x[idx], basic or advanced indexing; repeated advanced indices accumulate in the gradient."""
    return x[idx]


def _getitem_vjp(ans, x, idx):
    def vjp(g):
        out = np.zeros(np.shape(x), dtype=np.result_type(g))
        if _is_basic(idx):
            out[idx] = g
        else:
            np.add.at(out, idx, g)
        return out
    return vjp


defvjp(getitem, _getitem_vjp)


@primitive
def transpose(x, axes=None):
    return np.transpose(x, axes)


defvjp(transpose, lambda ans, x, axes=None:
       lambda g: np.transpose(g, None if axes is None else np.argsort(axes)))


@primitive
def concatenate2(a, b, axis=-1):
    """np.concatenate((a, b), axis) for two arrays of equal rank."""
    return np.concatenate((a, b), axis=axis)


def _split(first, axis):
    def maker(ans, a, b, axis=-1):
        n = np.shape(a)[axis]
        return lambda g: np.take(g, np.arange(n), axis=axis) if first else \
            np.take(g, np.arange(n, g.shape[axis]), axis=axis)
    return maker


defvjp(concatenate2, _split(True, -1), _split(False, -1))


@primitive
def broadcast_to(x, shape):
    return np.broadcast_to(x, shape)


defvjp(broadcast_to, lambda ans, x, shape: lambda g: g)
