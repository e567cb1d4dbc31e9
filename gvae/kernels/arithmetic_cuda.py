"""CUDA twins of :mod:`arithmetic_cpu`: CuPy's own elementwise operators and sums (each one kernel of CuPy's
on the device, recorded by a CUDA graph as any other)."""
from .backend import register

# x log y and x / y, each 0 where x = 0 and y is not NaN (arithmetic.binary's xlogy and xdivy)
_LIMITS = {"xlogy": "z = (x == T(0) && y == y) ? T(0) : x * log(y)",
           "xdivy": "z = (x == T(0) && y == y) ? T(0) : x / y"}
_KERNELS = {}


def _limit_kernel(op):
    """CuPy's elementwise kernel of ``op`` (one of :data:`_LIMITS`), made once."""
    if op not in _KERNELS:
        import cupy
        _KERNELS[op] = cupy.ElementwiseKernel("T x, T y", "T z", _LIMITS[op], f"gvae_{op}")
    return _KERNELS[op]


@register("binary", "cuda")
def binary(op, a, b, out):
    import cupy
    if op in _LIMITS:
        kernel = _limit_kernel(op)
        return kernel(a, b) if out is None else kernel(a, b, out)
    if op == "add":
        return cupy.add(a, b, out=out)
    if op == "subtract":
        return cupy.subtract(a, b, out=out)
    if op == "multiply":
        return cupy.multiply(a, b, out=out)
    return cupy.divide(a, b, out=out)


@register("unary", "cuda")
def unary(op, x):
    import cupy
    if op == "log":
        return cupy.log(x)
    if op == "exp":
        return cupy.exp(x)
    if op == "log1p":
        return cupy.log1p(x)
    if op == "expm1":
        return cupy.expm1(x)
    if op == "sqrt":
        return cupy.sqrt(x)
    if op == "absolute":
        return cupy.absolute(x)
    if op == "sign":
        return cupy.sign(x)
    return cupy.heaviside(x, 0)


@register("copy_into", "cuda")
def copy_into(src, dst):
    import cupy
    cupy.copyto(dst, src, casting="unsafe")


@register("broadcast_to", "cuda")
def broadcast_to(x, shape):
    import cupy
    return cupy.broadcast_to(x, shape)


@register("sum_axes", "cuda")
def sum_axes(x, axis, keepdims):
    import cupy
    return cupy.sum(x, axis=axis, keepdims=keepdims)
