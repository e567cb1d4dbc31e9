"""The matrix product of the dense layers: a @ b for 2-D arrays, written into ``out`` when given."""
from . import matmul_cpu  # noqa: F401  (registers the CPU kernel)
from .backend import implementation
from .checks import float_array, same_dtype


def _check(a, b, out):
    float_array("matmul a", a, 2)
    float_array("matmul b", b, 2)
    same_dtype("matmul", a, b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: expected a (M, K) and b (K, N), got shapes {a.shape} and {b.shape}")
    if out is not None and (out.shape != (a.shape[0], b.shape[1]) or out.dtype != a.dtype
                            or not out.flags.c_contiguous):
        raise ValueError(f"matmul: out must be C-contiguous {a.dtype} of shape {(a.shape[0], b.shape[1])}, "
                         f"got {out.dtype} {out.shape}")


def matmul(a, b, out=None):
    """a (M, K) @ b (K, N) -> (M, N), into ``out`` (C-contiguous (M, N), a's dtype) when given.

    Any strides of a and b (transposed views included). On the CPU with :func:`set_threads` above 1,
    a large product is computed by row blocks on gvae's threads (see :mod:`matmul_cpu`)."""
    return matmuls([(a, b, out)])[0]


def matmuls(products):
    """Independent products [(a, b, out or None), ...] (each as :func:`matmul` takes them) -> the list
    of results. On the CPU they run side by side on gvae's threads: one thread per product when there
    are as many products as threads (a dense layer's two gradients) and each is worth a hand-over, else
    row blocks of each (see :mod:`matmul_cpu`)."""
    products = [tuple(p) for p in products]
    if not products:
        return []
    for a, b, out in products:
        _check(a, b, out)
    return implementation("matmul", *[x for p in products for x in p[:2]])(products)
