"""CUDA twins of :mod:`band_cpu` (source: ``band.cu``; the decomposition and the memory-layout choice are
documented at the top of that file). Same canonical layouts and arguments as the Numba kernels.

Return values: the checked kernels return ``(bad, checksum)`` like their CPU twins, but as two 0-d
float64 CuPy arrays that stay on the device: ``band.py``'s ``_verdict`` reads them with ``==``,
``int()`` and ``math.isfinite()``, which fetch them, while a call with ``check=False`` (every VJP)
never waits for the device.
"""
import numpy as np

from ..backend import register
from ..cuda_build import CudaSource, contiguous, grid_for, int32, scalar, sm_count

SOURCE = CudaSource("band/band.cu", [
    "band_solve<{T}>", "band_solve_t<{T}>", "band_matvec<{T}>", "band_matvec_t<{T}>", "band_outer<{T}>",
    "band_logdet<{T}>", "band_trace_chain<{T}>", "band_trace_window<{T}, true>",
    "band_trace_window<{T}, false>", "band_trace_chain_grad<{T}>", "band_trace_band_grad<{T}>",
])

_SHARED_BYTES = 48 * 1024        # dynamic shared memory available without opting in
_SCRATCH_BYTES = 256 * 1024**2   # cap on the trace gradient's global scratch (fewer warps beyond)
_offsets_on_device = {}


def _offsets(offs, device):
    """``offs`` (NumPy int64, validated by band.py) as a device int32 array, cached per device."""
    offs = np.asarray(offs, dtype=np.int64)
    key = (offs.tobytes(), device.id)
    d = _offsets_on_device.get(key)
    if d is None:
        import cupy
        with device:
            d = cupy.asarray(np.asarray(offs, dtype=np.int32))
        _offsets_on_device[key] = d
    return d


def _flags():
    import cupy
    return cupy.zeros(2, dtype=np.float64)


def _result(flags):
    return flags[0], flags[1]


def _sizes(name, L, rhs=None):
    """(F, K, n[, S]) as int32, checking the products the kernels index with 32-bit ints."""
    F, K, n = L.shape
    contiguous(name, L)
    if rhs is None:
        int32(name, F * K * n)
        return int32(name, F, K, n)
    contiguous(name, rhs)
    S = rhs.shape[0]
    if rhs.shape != (S, F, n):
        raise ValueError(f"{name}: right-hand sides of shape {rhs.shape} do not match L {L.shape}")
    int32(name, S * F * n, F * K * n)
    return int32(name, F, K, n, S)


# --------------------------------------------------------------------------------------------------
# Substitutions and products
# --------------------------------------------------------------------------------------------------

def _substitution(kernel, L, offs, b, out):
    F, K, n, S = _sizes(kernel, L, b)
    contiguous(kernel, out)
    pairs = int(F) * int(S)
    with L.device:
        flags = _flags()
        if pairs and n:
            # 64 threads a block: the few pairs spread over many SMs (each thread is a serial chain)
            SOURCE.function(f"{kernel}<{{T}}>", L.dtype)(
                (-(-pairs // 64),), (64,), (L, _offsets(offs, L.device), b, out, F, K, S, n, flags))
    return _result(flags)


def _product(kernel, L, offs, x, out):
    F, K, n, S = _sizes(kernel, L, x)
    contiguous(kernel, out)
    total = int(F) * int(S) * int(n)
    with L.device:
        flags = _flags()
        if total:
            SOURCE.function(f"{kernel}<{{T}}>", L.dtype)(
                (grid_for(total, 256, L),), (256,), (L, _offsets(offs, L.device), x, out, F, K, S, n, flags))
    return _result(flags)


@register("band_solve_t", "cuda")
def band_solve_t(L, offs, b, out):
    """out[s, f] = L_f^{-T} b[s, f].  L (F, K, n); b, out (S, F, n). Returns (bad, checksum)."""
    return _substitution("band_solve_t", L, offs, b, out)


@register("band_solve", "cuda")
def band_solve(L, offs, b, out):
    """out[s, f] = L_f^{-1} b[s, f].  L (F, K, n); b, out (S, F, n). Returns (bad, checksum)."""
    return _substitution("band_solve", L, offs, b, out)


@register("band_matvec_t", "cuda")
def band_matvec_t(L, offs, x, out):
    """out[s, f] = L_f^T x[s, f].  L (F, K, n); x, out (S, F, n). Returns (bad, checksum)."""
    return _product("band_matvec_t", L, offs, x, out)


@register("band_matvec", "cuda")
def band_matvec(L, offs, x, out):
    """out[s, f] = L_f x[s, f].  L (F, K, n); x, out (S, F, n). Returns (bad, checksum)."""
    return _product("band_matvec", L, offs, x, out)


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
            (a, c, _offsets(offs, a.device), scalar(a.dtype, scale), out, Q, F, K, S, n))


# --------------------------------------------------------------------------------------------------
# Log-determinant, trace of the inverse and its gradient
# --------------------------------------------------------------------------------------------------

@register("band_logdet", "cuda")
def band_logdet(L, out):
    """out[f] = sum_i log L[f, 0, i]. Returns (bad, checksum)."""
    F, K, n = _sizes("band_logdet", L)
    contiguous("band_logdet", out)
    with L.device:
        flags = _flags()
        if F and n:
            SOURCE.function("band_logdet<{T}>", L.dtype)(
                (grid_for(F, 4, L),), (128,), (L, out, F, K, n, flags))
    return _result(flags)


def _is_chain(offs):
    return len(offs) == 2 and int(offs[1]) == 1


@register("band_trace_inv", "cuda")
def band_trace_inv(L, offs, out):
    """out[f] = tr((L_f L_f^T)^{-1}), exactly; float64 inside. Returns (bad, checksum)."""
    import cupy
    F, K, n = _sizes("band_trace_inv", L)
    contiguous("band_trace_inv", out)
    with L.device:
        flags = _flags()
        if not (F and n):
            return _result(flags)
        if _is_chain(offs):
            SOURCE.function("band_trace_chain<{T}>", L.dtype)(
                (grid_for(F, 64, L),), (64,), (L, out, F, n, flags))
            return _result(flags)
        W = int(offs[-1]) + 1
        per_warp = 8 * (W * W + W)
        warps = min(4, _SHARED_BYTES // per_warp)
        d_offs = _offsets(offs, L.device)
        if warps >= 1:
            SOURCE.function("band_trace_window<{T}, true>", L.dtype)(
                (grid_for(F, warps, L),), (32 * warps,), (L, d_offs, out, F, K, n, flags, flags),  # scratch unused here
                shared_mem=warps * per_warp)
        else:  # the window does not fit in shared memory: one window per warp in global memory
            blocks = grid_for(F, 4, L, blocks_per_sm=4)
            scratch = cupy.empty(blocks * 4 * (W * W + W), dtype=np.float64)
            SOURCE.function("band_trace_window<{T}, false>", L.dtype)(
                (blocks,), (128,), (L, d_offs, out, F, K, n, scratch, flags))
    return _result(flags)


@register("band_trace_inv_grad", "cuda")
def band_trace_inv_grad(L, offs, g, out):
    """out[f] = g[f] * d tr((L_f L_f^T)^{-1}) / d L_f on the band, zero in the slots that do not exist.
    L, out (F, K, n); g (F,). Returns (bad, checksum)."""
    import cupy
    F, K, n = _sizes("band_trace_inv_grad", L)
    contiguous("band_trace_inv_grad", g, out)
    with L.device:
        flags = _flags()
        if not (F and n):
            return _result(flags)
        if _is_chain(offs):
            int32("band_trace_inv_grad", int(F) * int(n))
            scratch = cupy.empty(int(F) * int(n), dtype=np.float64)
            SOURCE.function("band_trace_chain_grad<{T}>", L.dtype)(
                (grid_for(F, 64, L),), (64,), (L, g, out, F, n, scratch, flags))
            return _result(flags)
        W = int(offs[-1]) + 1
        per_warp = 2 * int(n) * W * 8
        # one warp per factor, as many warps as factors up to 64 per SM and the scratch cap
        warps = max(1, min(int(F), _SCRATCH_BYTES // per_warp, 64 * sm_count(L)))
        per_block = min(4, warps)
        blocks = warps // per_block
        scratch = cupy.empty(blocks * per_block * 2 * int(n) * W, dtype=np.float64)
        SOURCE.function("band_trace_band_grad<{T}>", L.dtype)(
            (blocks,), (32 * per_block,), (L, _offsets(offs, L.device), g, out, F, K, n, scratch, flags))
    return _result(flags)
