"""CUDA twins of :mod:`gamma_cpu` through ``cupyx.scipy.special`` (the same formulas and steps)."""
import numpy as np

from .backend import register

_STEP = 1e-5


@register("gamma_inverse_cdf", "cuda")
def gamma_inverse_cdf(alpha, u):
    """(z, dz/dalpha) as :func:`gamma_cpu.gamma_inverse_cdf`, in float64 on the GPU."""
    import cupy
    from cupyx.scipy import special
    with alpha.device:
        a, uu = alpha.astype(cupy.float64), u.astype(cupy.float64)
        z = cupy.maximum(special.gammaincinv(a, uu), np.finfo(alpha.dtype).tiny)
        h = _STEP * cupy.maximum(a, 1.0)
        lo = cupy.maximum(a - h, 0.5 * a)
        dP = (special.gammainc(a + h, z) - special.gammainc(lo, z)) / (a + h - lo)
        log_p = (a - 1.0) * cupy.log(z) - z - special.gammaln(a)
        return z.astype(alpha.dtype), (-dP * cupy.exp(-log_p)).astype(alpha.dtype)


@register("gamma_special", "cuda")
def gamma_special(name, x):
    """log Gamma(x) or digamma(x) on the GPU."""
    import cupy
    from cupyx.scipy import special
    with x.device:
        return cupy.asarray({"lgamma": special.gammaln, "digamma": special.digamma}[name](x), dtype=x.dtype)
