"""Front of the products with a banded factor (Numba: product_cpu.py; CUDA: product.cu, product_cuda.py):
L x, L^T x, and the band-restricted outer products that are the L-gradient of every solve and product."""
import numpy as np

from . import product_cpu  # noqa: F401  (registers the CPU kernels)
from ..backend import array_module, implementation
from ..checks import float_array, real_array, same_dtype
from .layout import _plan, _to_canonical, _vector_op, validate_offsets


def band_matvec_t(L, offsets, x, *, check=True):
    """L^T x."""
    return _vector_op("band_matvec_t", L, offsets, x, "x", check)


def band_matvec(L, offsets, x, *, check=True):
    """L x."""
    return _vector_op("band_matvec", L, offsets, x, "x", check)


def band_outer(a, c, offsets, batch_shape, scale=1.0):
    """Band-restricted outer products summed over samples: the L-gradient of every solve and product.

    ``a`` and ``c`` have shapes ``(*lead, n)`` that broadcast with ``batch_shape``; returns ``gL`` of
    shape ``(*batch_shape, K, n)`` with
    ``gL[..., k, i] = scale * sum_samples a[..., i] * c[..., i - offsets[k]]`` (zero for i < offsets[k]),
    summed over every broadcast axis on which the factor batch has size 1 or no axis.

    VJPs: x = L^{-T} b: gL = band_outer(x, L^{-1} g, scale=-1);  x = L^{-1} b: band_outer(L^{-T} g, x, -1);
    y = L x: band_outer(g, x);  y = L^T x: band_outer(x, g)."""
    name = "band_outer"
    float_array(f"{name} a", a, 1)
    float_array(f"{name} c", c, 1)
    same_dtype(name, a, c)
    n = a.shape[-1]
    if c.shape[-1] != n:
        raise ValueError(f"{name}: a and c must share the last axis, got {a.shape} and {c.shape}")
    batch = tuple(int(s) for s in batch_shape)
    scale = real_array(f"{name} scale", scale, np.float64)
    if scale.ndim:
        raise ValueError(f"{name}: scale must be a number, got shape {scale.shape}")
    offs = validate_offsets(name, offsets, n)
    K = len(offs)
    xp = array_module(a, c)
    plan = _plan(name, batch, [a.shape[:-1], c.shape[:-1]])
    S, F = plan[3], plan[4]
    ac = _to_canonical(xp, a, plan)
    cc = _to_canonical(xp, c, plan)
    # Split the samples across threads only when there are too few factors to keep them busy.
    Q = 1 if F >= 8 or S < 64 else min(8, S // 32)
    g = xp.empty((Q, F, K, n), dtype=a.dtype)
    if F:
        implementation(name, ac, cc)(ac, cc, offs, float(scale), g)
    g = g[0] if Q == 1 else g.sum(axis=0)
    return g.reshape(batch + (K, n))
