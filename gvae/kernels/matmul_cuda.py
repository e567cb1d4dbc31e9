"""CUDA twin of :mod:`matmul_cpu`: cuBLAS's GEMM through gvae's own handle (:mod:`cuda.cublas`), so that
a CUDA graph can record the dense layers, into ``out`` when given."""
from .backend import register
from .cuda.cublas import gemm


@register("matmul", "cuda")
def matmul(products):
    """[(a, b, out or None)] -> [a @ b], one cuBLAS call each on CuPy's current stream, in order."""
    import cupy
    outs = []
    for a, b, out in products:
        with a.device:
            if out is None:
                out = cupy.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
            outs.append(gemm(a, b, out))
    return outs
