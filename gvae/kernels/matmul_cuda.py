"""CUDA twin of :mod:`matmul_cpu`: CuPy's matmul (cuBLAS), into ``out`` when given."""
from .backend import register


@register("matmul", "cuda")
def matmul(products):
    """[(a, b, out or None)] -> [a @ b], one cuBLAS call each on the stream in order."""
    import cupy
    outs = []
    for a, b, out in products:
        with a.device:
            outs.append(cupy.matmul(a, b, out=out))
    return outs
