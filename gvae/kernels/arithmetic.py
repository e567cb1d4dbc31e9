"""The tape's elementwise arithmetic and sums as kernels: a op b with broadcasting, a copy into a given
array, a sum over axes. On the CPU they are Numba kernels with C entries, so that a training step made of
them can be recorded and replayed natively (:mod:`.cpu.programs`); arrays they cannot take as they are
(another layout, mixed dtypes) go through NumPy, and a recording open then is refused. On CUDA, CuPy's own
operators."""
from . import arithmetic_cpu  # noqa: F401  (registers the CPU kernels)
from .backend import array_module, implementation

__all__ = ["binary", "copy_into", "contiguous", "sum_axes", "OPERATIONS"]

OPERATIONS = ("add", "subtract", "multiply", "divide")


def binary(op, a, b, out=None):
    """a op b (op one of :data:`OPERATIONS`), NumPy's broadcasting and result, into ``out`` where given (an
    array of the result's shape and dtype); a or b may be a Python number."""
    if op not in OPERATIONS:
        raise ValueError(f"binary: op must be one of {OPERATIONS}, got {op!r}")
    arrays = [x for x in (a, b) if hasattr(x, "dtype")]
    return implementation("binary", *arrays)(op, a, b, out)


def copy_into(src, dst):
    """dst[...] = src (src broadcast to dst's shape, cast to its dtype); returns dst."""
    implementation("copy_into", dst)(src, dst)
    return dst


def contiguous(x):
    """``x`` itself where it is C-contiguous, else a C-contiguous copy made by :func:`copy_into`."""
    if x.flags.c_contiguous:
        return x
    xp = array_module(x)
    return copy_into(x, xp.empty(x.shape, x.dtype))


def sum_axes(x, axis=None, keepdims=False):
    """x.sum(axis=axis, keepdims=keepdims) in x's dtype (``axis`` None, an int or a tuple of ints)."""
    return implementation("sum_axes", x)(x, axis, keepdims)
