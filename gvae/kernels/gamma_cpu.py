"""CPU kernels of :mod:`gamma`: the standard gamma distribution's inverse CDF with its derivative in the
shape (implicit reparameterisation), log Gamma and digamma, through SciPy's special functions."""
import numpy as np
from scipy import special

from .backend import register

_STEP = 1e-5  # relative step of the central difference of P(alpha, z) in alpha (truncation ~1e-10)


@register("gamma_inverse_cdf")
def gamma_inverse_cdf(alpha, u):
    """(z, dz/dalpha): z = P^-1(alpha, u), P the regularised lower incomplete gamma function, floored at the
    dtype's smallest normal number; dz/dalpha = -(dP/dalpha)(alpha, z) / p(z; alpha) at fixed u (Figurnov
    et al., "Implicit Reparameterization Gradients", 2018), dP/dalpha by a central difference in float64."""
    a, uu = np.asarray(alpha, np.float64), np.asarray(u, np.float64)
    z = np.maximum(special.gammaincinv(a, uu), np.finfo(np.asarray(alpha).dtype).tiny)
    h = _STEP * np.maximum(a, 1.0)
    dP = (special.gammainc(a + h, z) - special.gammainc(np.maximum(a - h, 0.5 * a), z)) / (
        a + h - np.maximum(a - h, 0.5 * a))
    log_p = (a - 1.0) * np.log(z) - z - special.gammaln(a)
    dt = np.asarray(alpha).dtype
    return z.astype(dt), (-dP * np.exp(-log_p)).astype(dt)


@register("gamma_special")
def gamma_special(name, x):
    """log Gamma(x) (``"lgamma"``) or digamma(x) (``"digamma"``), elementwise in x's dtype."""
    return {"lgamma": special.gammaln, "digamma": special.psi}[name](x).astype(x.dtype)
