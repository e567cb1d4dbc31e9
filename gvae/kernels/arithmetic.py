"""The tape's elementwise arithmetic and sums as kernels: a op b with broadcasting, a copy into a given
array, a sum over axes. On the CPU they are Numba kernels with C entries, so that a training step made of
them can be recorded and replayed natively (:mod:`.cpu.programs`); arrays they cannot take as they are
(another layout, mixed dtypes) go through NumPy, and a recording open then is refused. On CUDA, CuPy's own
operators."""
from . import arithmetic_cpu  # noqa: F401  (registers the CPU kernels)
from .backend import array_module, implementation

__all__ = ["binary", "unary", "copy_into", "contiguous", "broadcast_to", "sum_axes", "OPERATIONS", "LIMITS", "UNARY"]

OPERATIONS = ("add", "subtract", "multiply", "divide")
LIMITS = ("xlogy", "xdivy")
UNARY = ("log", "exp", "log1p", "expm1", "sqrt", "absolute", "sign", "heaviside")


def binary(op, a, b, out=None):
    """a op b (op one of :data:`OPERATIONS` or :data:`LIMITS`), NumPy's broadcasting and result, into ``out``
    where given (an array of the result's shape and dtype); a or b may be a Python number. ``xlogy`` is
    a log(b) and ``xdivy`` a / b, each 0 where a = 0 and b is not NaN (SciPy's xlogy: the limit of the terms
    a log b of a density at the boundary of its support, 0 log 0 = 0, and of their derivatives); on the CPU
    they are the kernel's whether or not a recording is open, as :func:`unary` is."""
    if op not in OPERATIONS + LIMITS:
        raise ValueError(f"binary: op must be one of {OPERATIONS + LIMITS}, got {op!r}")
    return implementation("binary", a, b)(op, a, b, out)  # (Python numbers name no device)


def unary(op, x):
    """log(x), exp(x), log1p(x), expm1(x) = e^x - 1, sqrt(x), |x|, sign(x) or the step heaviside(x, 0) =
    [x > 0] (op one of :data:`UNARY`, NumPy's names) elementwise, in x's dtype. On the CPU the kernel
    computes it whether or not a recording is open (its results are the C library's, not NumPy's
    SIMD ones, so the taped and the replayed step agree only if both use it)."""
    if op not in UNARY:
        raise ValueError(f"unary: op must be one of {UNARY}, got {op!r}")
    return implementation("unary", x)(op, x)


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


def broadcast_to(x, shape):
    """``x`` broadcast to ``shape``: a read-only view, or while a program is recorded on the CPU a new
    array (a kernel's copy, which a replay makes again; the kernels take no view of stride 0)."""
    return implementation("broadcast_to", x)(x, tuple(shape))


def sum_axes(x, axis=None, keepdims=False):
    """x.sum(axis=axis, keepdims=keepdims) in x's dtype (``axis`` None, an int or a tuple of ints)."""
    return implementation("sum_axes", x)(x, axis, keepdims)
