"""CPU kernels of :mod:`gamma`: the standard gamma distribution's inverse CDF, the derivative of a draw in
the shape (implicit reparameterisation), log Gamma and digamma, through SciPy's special functions."""
import numpy as np
from scipy import special

from .backend import register

_STEP = 1e-5  # relative step of the central difference of P(alpha, z) in alpha (truncation ~1e-10)


@register("gamma_inverse_cdf")
def gamma_inverse_cdf(alpha, u):
    """z = P^-1(alpha, u), P the regularised lower incomplete gamma function (in float64), floored at the
    dtype's smallest normal number."""
    z = special.gammaincinv(np.asarray(alpha, np.float64), np.asarray(u, np.float64))
    return np.maximum(z, np.finfo(alpha.dtype).tiny).astype(alpha.dtype)


@register("gamma_draw_shape_grad")
def gamma_draw_shape_grad(alpha, z):
    """dz/dalpha at fixed u of the draw z = P^-1(alpha, u): -(dP/dalpha)(alpha, z) / p(z; alpha) (Figurnov et
    al., "Implicit Reparameterization Gradients", 2018), dP/dalpha by a central difference, in float64."""
    a, zz = np.asarray(alpha, np.float64), np.asarray(z, np.float64)
    h = _STEP * np.maximum(a, 1.0)
    lo = np.maximum(a - h, 0.5 * a)
    dP = (special.gammainc(a + h, zz) - special.gammainc(lo, zz)) / (a + h - lo)
    log_p = (a - 1.0) * np.log(zz) - zz - special.gammaln(a)
    return (-dP * np.exp(-log_p)).astype(alpha.dtype)


@register("gamma_special")
def gamma_special(name, x):
    """log Gamma(x) (``"lgamma"``) or digamma(x) (``"digamma"``), elementwise in x's dtype."""
    return {"lgamma": special.gammaln, "digamma": special.psi}[name](x).astype(x.dtype)
