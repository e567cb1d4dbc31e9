"""CUDA twins of :mod:`product_cpu` (source: ``product.cu``, one template for both products):
y = L x, y = L^T x, and the band-restricted outer products of their gradients. Same canonical layouts,
arguments and return values as the Numba kernels (see :mod:`common_cuda`)."""
from ..backend import register
from ..cuda.build import CudaSource, contiguous, grid_for, int32, scalar
from .common_cuda import device_offsets, new_flags, sizes, verdict

SOURCE = CudaSource("band/product.cu", ["band_matvec<{T}, false>", "band_matvec<{T}, true>", "band_outer<{T}>"])


def _matvec(name, transposed, L, offs, x, out):
    F, K, n, S = sizes(name, L, x)
    contiguous(name, out)
    total = int(F) * int(S) * int(n)
    with L.device:
        flags = new_flags()
        if total:
            SOURCE.function(f"band_matvec<{{T}}, {'true' if transposed else 'false'}>", L.dtype)(
                (grid_for(total, 256, L),), (256,), (L, device_offsets(offs, L.device), x, out, F, K, S, n, flags))
    return verdict(flags)


@register("band_matvec_t", "cuda")
def band_matvec_t(L, offs, x, out):
    """out[s, f] = L_f^T x[s, f].  L (F, K, n); x, out (S, F, n). Returns (bad, checksum)."""
    return _matvec("band_matvec_t", True, L, offs, x, out)


@register("band_matvec", "cuda")
def band_matvec(L, offs, x, out):
    """out[s, f] = L_f x[s, f].  L (F, K, n); x, out (S, F, n). Returns (bad, checksum)."""
    return _matvec("band_matvec", False, L, offs, x, out)


@register("band_outer", "cuda")
def band_outer(a, c, offs, scale, out):
    """out[q, f, k, i] = scale * sum_{s in chunk q} a[s, f, i] c[s, f, i - o_k] (0 for i < o_k);
    a, c (S, F, n); out (Q, F, K, n), the samples split into Q chunks as on the CPU."""
    contiguous("band_outer", a, c, out)
    S, F, n = a.shape
    Q, _, K, _ = out.shape
    if c.shape != a.shape or out.shape != (Q, F, K, n):
        raise ValueError(f"band_outer: shapes a {a.shape}, c {c.shape}, out {out.shape} do not match")
    Q, F, K, n, S = int32("band_outer", Q, F, K, n, S)
    total = int(Q) * int(F) * int(n)
    int32("band_outer", total * int(K), int(S) * int(F) * int(n))
    if total == 0:
        return
    with a.device:
        SOURCE.function("band_outer<{T}>", a.dtype)(
            (grid_for(total, 256, a),), (256,),
            (a, c, device_offsets(offs, a.device), scalar(a.dtype, scale), out, Q, F, K, S, n))
