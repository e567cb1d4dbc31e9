"""CUDA twins of :mod:`adam_cpu` (source: ``adam.cu``): one fused Adam pass over flat buffers, the
running average of the parameters, and the squared norm (two stages: per-block float64 partials, then one block adds them in a fixed order)."""
import math

import numpy as np

from .backend import register
from .cuda_build import CudaSource, contiguous, grid_for, scalar

SOURCE = CudaSource("adam.cu", ["adam_update<{T}>", "average_update<{T}>", "sum_squares_partial<{T}>", "sum_partials"])

_THREADS = 256


@register("sum_squares", "cuda")
def sum_squares(g):
    """sum(g**2) of a 1-D array as a Python float: per-thread sums in g's precision, float64 across
    threads and blocks. (Returning a float synchronises with the device, as the wrapper's float() would.)"""
    import cupy
    n = g.size
    if n == 0:
        return 0.0
    blocks = grid_for(n, _THREADS, g, blocks_per_sm=4)
    with g.device:
        g = cupy.ascontiguousarray(g)
        partial = cupy.empty(blocks, dtype=np.float64)
        total = cupy.empty(1, dtype=np.float64)
        SOURCE.function("sum_squares_partial<{T}>", g.dtype)((blocks,), (_THREADS,),
                                                             (g, partial, np.int64(n)))
        SOURCE.function("sum_partials", g.dtype)((1,), (1024,), (partial, total, np.int32(blocks)))
        return float(total[0])


@register("adam_update", "cuda")
def adam_update(p, g, m, v, lr, beta1, beta2, eps, step, scale):
    """In place over flat buffers: Adam with bias correction on the gradient ``scale * g`` (see
    adam_cpu.adam_update: the same constants, computed in float64 and rounded to p's dtype)."""
    contiguous("adam_update", p, g, m, v)
    n = p.size
    if n == 0:
        return
    t = p.dtype
    c1 = 1.0 - beta1 ** step
    c2 = 1.0 - beta2 ** step
    args = (p, g, m, v, scalar(t, lr * math.sqrt(c2) / c1), scalar(t, eps * math.sqrt(c2)),
            scalar(t, beta1), scalar(t, beta2), scalar(t, 1.0 - beta1), scalar(t, 1.0 - beta2),
            scalar(t, scale), np.int64(n))
    with p.device:
        SOURCE.function("adam_update<{T}>", t)((grid_for(n, _THREADS, p, blocks_per_sm=8),), (_THREADS,), args)


@register("average_update", "cuda")
def average_update(a, p, decay):
    """In place over flat buffers: a <- decay a + (1 - decay) p (see adam_cpu.average_update)."""
    contiguous("average_update", a, p)
    n = a.size
    if n == 0:
        return
    t = a.dtype
    with a.device:
        SOURCE.function("average_update<{T}>", t)((grid_for(n, _THREADS, a, blocks_per_sm=8),), (_THREADS,),
                                                  (a, p, scalar(t, decay), scalar(t, 1.0 - decay), np.int64(n)))
