"""CUDA twins of :mod:`activation_cpu` (source: ``activation.cu``): bias + activation, forward in place
and backward from the output, one template specialisation per activation. The source's
``enum Activation`` is generated from :data:`activations.CODES` and put before it (its prelude), so the
codes passed as template arguments here, the Numba kernels' and the ops' come from one table.

The bias gradient's column sums are deterministic: each block of the backward kernel writes its partial
sums to a row of a scratch array, and a second kernel adds the rows up in order (no atomics)."""
import numpy as np

from .activations import CODES as ACT_CODES
from .backend import register
from .cuda.build import CudaSource, contiguous, enum_text, int32, sm_count

SOURCE = CudaSource(
    "activation.cu",
    [f"bias_act_forward<{{T}}, {c}>" for c in ACT_CODES.values()]
    + [f"bias_act_backward<{{T}}, {c}>" for c in ACT_CODES.values()]
    + ["column_sum<{T}>"],
    prelude=enum_text("Activation", ACT_CODES))


@register("bias_act_forward", "cuda")
def bias_act_forward(h, b, activation):
    """In place: h <- act(h + b[None, :]); h (M, N) C-contiguous, b (N,)."""
    import cupy
    contiguous("bias_act_forward", h)
    m, n = int32("bias_act_forward", *h.shape)
    if not (m and n):
        return
    bx = 32 * min(8, -(-int(n) // 32))          # threads along a row: a multiple of 32, at most 256
    by = 256 // bx                               # rows per block
    gx = -(-int(n) // bx)
    # About 16 blocks per SM in all; the rows beyond are covered grid-stride.
    gy = max(1, min(-(-int(m) // by), (16 * sm_count(h)) // gx, 65535))
    fn = SOURCE.function(f"bias_act_forward<{{T}}, {ACT_CODES[activation]}>", h.dtype)
    with h.device:
        fn((gx, gy), (bx, by), (h, cupy.ascontiguousarray(b), m, n))


@register("bias_act_backward", "cuda")
def bias_act_backward(g, y, activation, gh):
    """gh <- g * act'(.) from the output y (all (M, N)); returns the bias gradient (N,). For the identity, a
    gh that is g itself is left as it is: only g's column sums are computed (as the CPU kernel does)."""
    import cupy
    contiguous("bias_act_backward", gh)
    alone = gh is g and activation == "linear"
    m, n = int32("bias_act_backward", *g.shape)
    with g.device:
        g, y = cupy.ascontiguousarray(g), cupy.ascontiguousarray(y)
        if not (m and n):
            return cupy.zeros(int(n), dtype=g.dtype)
        gb = cupy.empty(int(n), dtype=g.dtype)
        if alone:
            SOURCE.function("column_sum<{T}>", g.dtype)((-(-int(n) // 256),), (256,), (g, gb, m, n))
            return gb
        gx = -(-int(n) // 32)
        # Enough row blocks to give every SM about four blocks, each thread at least one row.
        gy = max(1, min(-(-int(m) // 8), (4 * sm_count(g)) // gx, 1024))
        fn = SOURCE.function(f"bias_act_backward<{{T}}, {ACT_CODES[activation]}>", g.dtype)
        if gy == 1:
            fn((gx, 1), (32, 8), (g, y, gh, gb, m, n))
        else:
            part = cupy.empty((gy, int(n)), dtype=g.dtype)
            fn((gx, gy), (32, 8), (g, y, gh, part, m, n))
            SOURCE.function("column_sum<{T}>", g.dtype)((-(-int(n) // 256),), (256,),
                                                        (part, gb, np.int32(gy), n))
    return gb
