"""CUDA twins of :mod:`gamma_cpu` through ``cupyx.scipy.special`` (the same formulas and steps), and the Poisson
draw in CuPy's elementwise operators."""
import numpy as np

from .backend import register

_STEP = 1e-5


@register("gamma_inverse_cdf", "cuda")
def gamma_inverse_cdf(alpha, u):
    """z as :func:`gamma_cpu.gamma_inverse_cdf`, in float64 on the GPU."""
    import cupy
    from cupyx.scipy import special
    with alpha.device:
        z = special.gammaincinv(alpha.astype(cupy.float64), u.astype(cupy.float64))
        return cupy.maximum(z, np.finfo(alpha.dtype).tiny).astype(alpha.dtype)


@register("gamma_draw_shape_grad", "cuda")
def gamma_draw_shape_grad(alpha, z):
    """dz/dalpha as :func:`gamma_cpu.gamma_draw_shape_grad`, in float64 on the GPU."""
    import cupy
    from cupyx.scipy import special
    with alpha.device:
        a, zz = alpha.astype(cupy.float64), z.astype(cupy.float64)
        h = _STEP * cupy.maximum(a, 1.0)
        lo = cupy.maximum(a - h, 0.5 * a)
        dP = (special.gammainc(a + h, zz) - special.gammainc(lo, zz)) / (a + h - lo)
        log_p = (a - 1.0) * cupy.log(zz) - zz - special.gammaln(a)
        return (-dP * cupy.exp(-log_p)).astype(alpha.dtype)


@register("gamma_special", "cuda")
def gamma_special(name, x):
    """log Gamma(x) or digamma(x) on the GPU."""
    import cupy
    from cupyx.scipy import special
    with x.device:
        return cupy.asarray({"lgamma": special.gammaln, "digamma": special.digamma}[name](x), dtype=x.dtype)


@register("poisson_draw", "cuda")
def poisson_draw(rate, u, most):
    """Counts k ~ Poisson(rate) as :func:`gamma_cpu.poisson_draw`: the probabilities accumulated in float64
    on the GPU, one pass of the arrays a count."""
    import cupy
    with rate.device:
        r, v = rate.astype(cupy.float64), u.astype(cupy.float64)
        mass = cupy.exp(-r)
        below = mass
        k = cupy.zeros(r.shape)
        for j in range(1, most + 1):
            k = k + (v >= below)
            mass = mass * r / j
            below = below + mass
        valid = (r >= 0) & (r < cupy.inf) & (v >= 0) & (v <= 1)
        return cupy.where(valid, k, cupy.nan).astype(rate.dtype)
