"""Argument checks shared by the public kernel wrappers: clear errors instead of kernel crashes."""
import numpy as np


# Native-order float32 and float64, as dtypes: a set lookup is a quarter of comparing a dtype with types.
_FLOATS = frozenset((np.dtype(np.float32), np.dtype(np.float64)))


def float_array(name, a, ndim_min=1):
    """Check ``a`` is a floating array (float32/float64) with at least ``ndim_min`` dimensions."""
    dtype = getattr(a, "dtype", None)
    if dtype is None or not hasattr(a, "shape"):
        raise TypeError(f"{name}: expected an array, got {type(a).__name__}")
    if dtype not in _FLOATS:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")
    if a.ndim < ndim_min:
        raise ValueError(f"{name}: expected at least {ndim_min} dimension(s), got shape {a.shape}")
    return a


def real_array(name, a, dtype, xp=np):
    """``a`` (an array, array-like or number of real values: bool, int or float) as an ``xp`` array of
    ``dtype``; a ``TypeError`` naming ``name`` for anything else (complex numbers, whose imaginary part a
    conversion would drop, strings, objects)."""
    a = xp.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real numbers (bool, int or float), got dtype {a.dtype}")
    return a.astype(dtype, copy=False)


def same_dtype(name, *arrays):
    """The one dtype of ``arrays``; a TypeError naming ``name`` where they have more than one."""
    first = arrays[0].dtype
    for a in arrays[1:]:
        if a.dtype != first:
            raise TypeError(f"{name}: arguments must share one dtype, got {sorted({str(a.dtype) for a in arrays})}")
    return first


def rows(xp, a):
    """``a`` as a C-contiguous (M, N) array of its rows over the last axis (a view when possible)."""
    return xp.ascontiguousarray(a.reshape(-1, a.shape[-1]))
