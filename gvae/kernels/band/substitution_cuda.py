"""CUDA twins of :mod:`substitution_cpu` (source: ``substitution.cu``, one template for both
directions): x = L^{-1} b and x = L^{-T} b. Same canonical layouts, arguments and return values as the
Numba kernels (see :mod:`common_cuda`)."""
from ..backend import register
from ..cuda.build import CudaSource, contiguous
from .common_cuda import KC_MAX, compile_time_k, device_offsets, new_flags, sizes, verdict

SOURCE = CudaSource("band/substitution.cu", [f"band_solve<{{T}}, {tr}, {kc}>" for tr in ("false", "true")
                                             for kc in range(KC_MAX + 1)])


def _solve(name, transposed, L, offs, b, out):
    F, K, n, S = sizes(name, L, b)
    contiguous(name, out)
    pairs = int(F) * int(S)
    with L.device:
        flags = new_flags()
        if pairs and n:
            # 64 threads a block: the few pairs spread over many SMs (each thread is a serial chain)
            kc = compile_time_k(K)
            SOURCE.function(f"band_solve<{{T}}, {'true' if transposed else 'false'}, {kc}>", L.dtype)(
                (-(-pairs // 64),), (64,), (L, device_offsets(offs, L.device), b, out, F, K, S, n, flags))
    return verdict(flags)


@register("band_solve_t", "cuda")
def band_solve_t(L, offs, b, out):
    """out[s, f] = L_f^{-T} b[s, f].  L (F, K, n); b, out (S, F, n). Returns (bad, checksum)."""
    return _solve("band_solve_t", True, L, offs, b, out)


@register("band_solve", "cuda")
def band_solve(L, offs, b, out):
    """out[s, f] = L_f^{-1} b[s, f].  L (F, K, n); b, out (S, F, n). Returns (bad, checksum)."""
    return _solve("band_solve", False, L, offs, b, out)
