"""CUDA twins of :mod:`gamma_cpu`: the gamma quantile, the draw's derivative in the shape and the Poisson draws
as kernels of their own (source: ``gamma.cu``: the same series, fraction, starts and steps as the Numba
kernels, one thread an item); log Gamma and digamma through ``cupyx.scipy.special``."""
import numpy as np

from .backend import register
from .cuda.build import CudaSource, contiguous, grid_for

SOURCE = CudaSource("gamma.cu", ["gamma_inverse_cdf<{T}>", "gamma_shape_grad<{T}>", "poisson_draw<{T}>"])


def _itemwise(name, kernel_of, first, second, *scalars):
    """The kernel ``kernel_of(dtype)`` over the items of ``first`` and ``second`` (one shape and dtype) into a
    new array of their shape and dtype, then ``scalars`` before the item count."""
    import cupy
    with first.device:
        a, b = cupy.ascontiguousarray(first), cupy.ascontiguousarray(second)
        out = cupy.empty(a.shape, a.dtype)
        contiguous(name, a, b, out)
        if out.size:
            kernel_of(a.dtype)((grid_for(out.size, 256, out),), (256,), (a, b, out, *scalars, np.int64(out.size)))
        return out


@register("gamma_inverse_cdf", "cuda")
def gamma_inverse_cdf(alpha, u):
    """z as :func:`gamma_cpu.gamma_inverse_cdf` (floored at the dtype's smallest normal number), in double on
    the GPU."""
    return _itemwise("gamma_inverse_cdf", lambda t: SOURCE.function("gamma_inverse_cdf<{T}>", t), alpha, u,
                     np.float64(np.finfo(alpha.dtype).tiny))


@register("gamma_draw_shape_grad", "cuda")
def gamma_draw_shape_grad(alpha, z):
    """dz/dalpha as :func:`gamma_cpu.gamma_draw_shape_grad`, in double on the GPU."""
    return _itemwise("gamma_draw_shape_grad", lambda t: SOURCE.function("gamma_shape_grad<{T}>", t), alpha, z)


@register("gamma_special", "cuda")
def gamma_special(name, x):
    """log Gamma(x) or digamma(x) on the GPU."""
    import cupy
    from cupyx.scipy import special
    with x.device:
        return cupy.asarray({"lgamma": special.gammaln, "digamma": special.digamma}[name](x), dtype=x.dtype)


@register("poisson_draw", "cuda")
def poisson_draw(rate, u, most):
    """Counts k ~ Poisson(rate) as :func:`gamma_cpu.poisson_draw`, in double on the GPU."""
    return _itemwise("poisson_draw", lambda t: SOURCE.function("poisson_draw<{T}>", t), rate, u, np.float64(most))
