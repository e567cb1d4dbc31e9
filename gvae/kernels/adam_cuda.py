"""CUDA twins of :mod:`adam_cpu` (source: ``adam.cu``): one fused Adam pass over flat buffers, the
running average of the parameters, and the squared norm (two stages: per-block float64 partials, then one block adds them in a fixed order)."""
import numpy as np

from .backend import register
from .cuda.build import CudaSource, contiguous, grid_for, scalar

SOURCE = CudaSource("adam.cu", ["adam_update<{T}>", "adam_update_guarded<{T}>", "average_update<{T}>",
                               "sum_squares_partial<{T}>", "sum_partials"])

_THREADS = 256


@register("sum_squares_array", "cuda")
def sum_squares_array(g):
    """sum(g**2) of a 1-D array as a float64 (1,) CuPy array, not read: per-thread sums in g's precision,
    float64 across threads and blocks (a fixed order)."""
    import cupy
    n = g.size
    with g.device:
        total = cupy.zeros(1, dtype=np.float64)
        if n == 0:
            return total
        blocks = grid_for(n, _THREADS, g, blocks_per_sm=4)
        g = cupy.ascontiguousarray(g)
        partial = cupy.empty(blocks, dtype=np.float64)
        SOURCE.function("sum_squares_partial<{T}>", g.dtype)((blocks,), (_THREADS,),
                                                             (g, partial, np.int64(n)))
        SOURCE.function("sum_partials", g.dtype)((1,), (1024,), (partial, total, np.int32(blocks)))
        return total


@register("sum_squares", "cuda")
def sum_squares(g):
    """sum(g**2) of a 1-D array as a Python float (:func:`sum_squares_array`, read: a synchronisation)."""
    return float(sum_squares_array(g)[0])


def _average(t, p, a, decay):
    """The average's kernel arguments (a, d, e, averaged): without an average, p stands in for a, which the
    kernel then never reads."""
    return (p if a is None else a, scalar(t, decay), scalar(t, 1.0 - decay), np.int32(a is not None))


@register("adam_update", "cuda")
def adam_update(p, g, m, v, rate, eps_hat, beta1, beta2, scale, a=None, decay=0.0):
    """In place over flat buffers: Adam with bias correction on the gradient ``scale * g`` (see
    adam_cpu.adam_update: the same float64 constants, rounded to p's dtype), and with an average ``a`` its
    step on the new p."""
    contiguous("adam_update", p, g, m, v, *(() if a is None else (a,)))
    n = p.size
    if n == 0:
        return
    t = p.dtype
    avg = _average(t, p, a, decay)
    args = (p, g, m, v, avg[0], scalar(t, rate), scalar(t, eps_hat),
            scalar(t, beta1), scalar(t, beta2), scalar(t, 1.0 - beta1), scalar(t, 1.0 - beta2),
            scalar(t, scale), *avg[1:], np.int64(n))
    with p.device:
        SOURCE.function("adam_update<{T}>", t)((grid_for(n, _THREADS, p, blocks_per_sm=8),), (_THREADS,), args)


@register("adam_update_guarded", "cuda")
def adam_update_guarded(p, g, m, v, hyper, norm2, loss, beta1, beta2, a=None, decay=0.0):
    """In place over flat buffers: :func:`adam_update` with (rate, eps_hat, clip) read from the float64
    device array ``hyper``, the clip scale from the float64 ``norm2[0]``, and no write unless ``norm2[0]``
    and ``loss[0]`` are finite (see adam.cu)."""
    contiguous("adam_update_guarded", p, g, m, v, hyper, norm2, loss, *(() if a is None else (a,)))
    n = p.size
    if n == 0:
        return
    t = p.dtype
    avg = _average(t, p, a, decay)
    args = (p, g, m, v, avg[0], hyper, norm2, loss, scalar(t, beta1), scalar(t, beta2), scalar(t, 1.0 - beta1),
            scalar(t, 1.0 - beta2), *avg[1:], np.int64(n))
    with p.device:
        SOURCE.function("adam_update_guarded<{T}>", t)((grid_for(n, _THREADS, p, blocks_per_sm=8),), (_THREADS,),
                                                       args)


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
