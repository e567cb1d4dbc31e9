"""KL of a diagonal Gaussian from the standard normal, fused with its gradient."""
from . import gauss_kl_cpu  # noqa: F401  (registers the CPU kernel)
from .backend import array_module, implementation
from .checks import float_array, same_dtype


def diag_normal_kl(mu, sigma, want_grad=False):
    """KL(N(mu, diag sigma^2) || N(0, I)) over the last axis; mu, sigma (*B, D) with sigma > 0.

    Returns ``(kl of shape (*B,), (dkl/dmu, dkl/dsigma) or None)``."""
    float_array("diag_normal_kl mu", mu)
    float_array("diag_normal_kl sigma", sigma)
    same_dtype("diag_normal_kl", mu, sigma)
    if mu.shape != sigma.shape:
        raise ValueError(f"diag_normal_kl: mu {mu.shape} and sigma {sigma.shape} must have one shape")
    xp = array_module(mu, sigma)
    # Rows that lie apart (the mean and scale as blocks of columns of one head) are taken as they are.
    m2, s2 = mu.reshape(-1, mu.shape[-1]), sigma.reshape(-1, sigma.shape[-1])
    if want_grad:
        dm, ds = xp.empty(m2.shape, m2.dtype), xp.empty(s2.shape, s2.dtype)
    else:
        dm = ds = xp.empty((0, m2.shape[1]), m2.dtype)
    out = implementation("diag_normal_kl", m2, s2)(m2, s2, dm, ds)
    grads = (dm.reshape(mu.shape), ds.reshape(mu.shape)) if want_grad else None
    return out.reshape(mu.shape[:-1]), grads
