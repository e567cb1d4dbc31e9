"""CUDA twins of :mod:`trace_cpu` (source: ``trace.cu``): the exact diagonal and trace of (L L^T)^{-1} and
their gradients, by the chain's recursion for offsets (0, 1) and by selected inversion otherwise. Same
canonical layouts, arguments and return values as the Numba kernels (see :mod:`common_cuda`)."""
import numpy as np

from ..backend import register
from ..cuda.build import CudaSource, contiguous, grid_for, int32, memory_bytes, sm_count
from .common_cuda import KC_MAX, compile_time_k, device_offsets, new_flags, sizes, verdict

SOURCE = CudaSource("band/trace.cu", [
    "band_trace_chain<{T}, false>", "band_trace_chain<{T}, true>",
    *(f"band_trace_window<{{T}}, {shared}, {diag}, {kc}>" for shared in ("true", "false") for diag in ("false", "true")
      for kc in range(KC_MAX + 1)),
    "band_trace_chain_grad<{T}>",
    *(f"band_trace_band_grad<{{T}}, {shared}, {kc}>" for shared in ("true", "false") for kc in range(KC_MAX + 1)),
])

_SHARED_BYTES = 48 * 1024        # dynamic shared memory available without opting in
# Cap on the gradient's global scratch per launch: fewer warps beyond it, and where not even one warp
# keeps every row of Sigma within it, the rows in segments. None: a 64th of the device's memory, at least
# 256 MiB (room for the warps a wide band needs to fill the GPU: extended grid 28 x 28 takes 191 KiB a
# warp); a number of bytes (tests lower it) overrides that.
_SCRATCH_BYTES = None


def _grad_scratch(n, W, ks):
    """float64 per warp of band_trace_band_grad with segments of ks rows, m = ceil(n / ks) of them: the
    rows of one segment and the w = W - 1 after it, min(ks + w, n) x W; w rows kept at each of the m - 1
    segment boundaries, (m - 1) w x W; the adjoint ring, W x W (unused where the ring is in shared memory).
    (n + W) W for one segment (ks = n)."""
    w = W - 1
    m = -(-n // ks)
    return (min(ks + w, n) + (m - 1) * w + W) * W


def _segment_rows(n, W, budget):
    """Rows per segment for one warp's scratch of at most ``budget`` float64 (see selected_inversion_cpu's
    _segment_rows): the fewest segments that fit, ks = ceil(n / m), else, where none fits, the m of the
    least scratch, about (2 sqrt(n w) + w + W) W at m ~ sqrt(n / w), against (n + W) W for ks = n."""
    w = W - 1
    if w == 0:  # rows independent of one another: no checkpoints, the scratch falls with ks
        return max(1, min(n, budget // W - W))
    best, ks_best, m = None, n, 1
    while best is None or (m - 1) * w * W < best:  # past that every m needs more
        ks = -(-n // m)
        need = _grad_scratch(n, W, ks)
        if need <= budget:
            return ks
        if best is None or need < best:
            best, ks_best = need, ks
        if ks == 1:
            break
        m += 1
    return ks_best


def _scratch_bytes(array):
    """The gradient's scratch budget on the device holding ``array`` (see _SCRATCH_BYTES)."""
    if _SCRATCH_BYTES is not None:
        return _SCRATCH_BYTES
    return max(256 * 1024**2, memory_bytes(array) // 64)


def _grad_launch(F, n, W, sms, budget_bytes):
    """(warps, rows per segment) of band_trace_band_grad, one warp per factor: every row kept (ks = n)
    in as many warps as factors up to 64 per SM and the scratch cap, at least one; where one warp's
    rows alone pass the cap, the rows in segments (the forward sweep once more, whatever their number),
    in as many warps as fit at the least scratch, each segmented to fit its share."""
    budget = budget_bytes // 8
    cap = min(F, 64 * sms)
    full = _grad_scratch(n, W, n)
    if full <= budget:
        return max(1, min(cap, budget // full)), n
    warps = max(1, min(cap, budget // _grad_scratch(n, W, _segment_rows(n, W, 0))))
    return warps, _segment_rows(n, W, budget // warps)


def _is_chain(offs):
    return len(offs) == 2 and int(offs[1]) == 1


def _forward(name, L, offs, out, diag):
    """The forward recursion: out (F,) the traces, or out (F, n) the diagonals (``diag``)."""
    import cupy
    F, K, n = sizes(name, L)
    contiguous(name, out)
    flag = "true" if diag else "false"
    with L.device:
        flags = new_flags()
        if not (F and n):
            return verdict(flags)
        if _is_chain(offs):
            SOURCE.function(f"band_trace_chain<{{T}}, {flag}>", L.dtype)(
                (grid_for(F, 64, L),), (64,), (L, out, F, n, flags))
            return verdict(flags)
        W = int(offs[-1]) + 1
        per_warp = 8 * (W * W + W)
        warps = min(4, _SHARED_BYTES // per_warp)
        d_offs = device_offsets(offs, L.device)
        kc = compile_time_k(K)
        if warps >= 1:
            SOURCE.function(f"band_trace_window<{{T}}, true, {flag}, {kc}>", L.dtype)(
                (grid_for(F, warps, L),), (32 * warps,), (L, d_offs, out, F, K, n, flags, flags),  # scratch unused here
                shared_mem=warps * per_warp)
        else:  # the window does not fit in shared memory: one window per warp in global memory
            blocks = grid_for(F, 4, L, blocks_per_sm=4)
            scratch = cupy.empty(blocks * 4 * (W * W + W), dtype=np.float64)
            SOURCE.function(f"band_trace_window<{{T}}, false, {flag}, {kc}>", L.dtype)(
                (blocks,), (128,), (L, d_offs, out, F, K, n, scratch, flags))
    return verdict(flags)


def _grad(name, L, offs, g, out):
    """out[f] = d(sum_i g[f, i] Sigma_ii) / d L_f on the band, zero in the slots that do not exist; g (F, G)
    with G = n, or G = 1 (one g per factor: the trace), or (F,) for G = 1."""
    import cupy
    F, K, n = sizes(name, L)
    contiguous(name, g, out)
    # int32 whatever the NumPy: under NumPy 1's value-based casting, a Python int // numpy.int32 is an int64,
    # whose eight bytes CuPy would pass to the kernel's `int G` unconverted
    G = int32(name, g.size // int(F) if F else 1)[0]
    with L.device:
        flags = new_flags()
        if not (F and n):
            return verdict(flags)
        if _is_chain(offs):
            int32(name, int(F) * int(n))
            scratch = cupy.empty(int(F) * int(n), dtype=np.float64)
            SOURCE.function("band_trace_chain_grad<{T}>", L.dtype)(
                (grid_for(F, 64, L),), (64,), (L, g, out, F, n, G, scratch, flags))
            return verdict(flags)
        W = int(offs[-1]) + 1
        warps, ks = _grad_launch(int(F), int(n), W, sm_count(L), _scratch_bytes(L))
        # the adjoints' ring in shared memory where a warp's W x W float64 fit, else in the scratch
        per_block = min(4, warps, _SHARED_BYTES // (8 * W * W))
        shared = per_block >= 1
        per_block = per_block if shared else min(4, warps)
        blocks = warps // per_block
        scratch = cupy.empty(blocks * per_block * _grad_scratch(int(n), W, ks), dtype=np.float64)
        kc = compile_time_k(K)
        SOURCE.function(f"band_trace_band_grad<{{T}}, {'true' if shared else 'false'}, {kc}>", L.dtype)(
            (blocks,), (32 * per_block,), (L, device_offsets(offs, L.device), g, out, F, K, n, G,
                                           int32(name, ks)[0], scratch, flags),
            shared_mem=8 * W * W * per_block if shared else 0)
    return verdict(flags)


@register("band_sigma_keeps_inverse", "cuda")
def band_sigma_keeps_inverse(L, offs):
    """False: on the GPU every band runs the selected inversion, which keeps nothing for the gradient."""
    return False


@register("band_trace_inv", "cuda")
def band_trace_inv(L, offs, out):
    """out[f] = tr((L_f L_f^T)^{-1}), exactly; float64 inside. Returns (bad, checksum)."""
    return _forward("band_trace_inv", L, offs, out, False)


@register("band_diag_inv", "cuda")
def band_diag_inv(L, offs, out):
    """out[f, i] = ((L_f L_f^T)^{-1})_ii, exactly; out (F, n). Returns (bad, checksum)."""
    return _forward("band_diag_inv", L, offs, out, True)


@register("band_trace_inv_grad", "cuda")
def band_trace_inv_grad(L, offs, g, out):
    """out[f] = g[f] * d tr((L_f L_f^T)^{-1}) / d L_f on the band, zero in the slots that do not exist.
    L, out (F, K, n); g (F,). Returns (bad, checksum)."""
    return _grad("band_trace_inv_grad", L, offs, g, out)


@register("band_diag_inv_grad", "cuda")
def band_diag_inv_grad(L, offs, g, out):
    """out[f] = sum_i g[f, i] d ((L_f L_f^T)^{-1})_ii / d L_f on the band, zero in the slots that do not
    exist. L, out (F, K, n); g (F, n). Returns (bad, checksum)."""
    return _grad("band_diag_inv_grad", L, offs, g, out)
