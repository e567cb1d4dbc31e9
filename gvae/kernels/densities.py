"""Fused log-densities and KL terms that the objectives evaluate on every step."""
from . import bernoulli_cpu, gauss_kl_cpu  # noqa: F401  (registers the CPU kernels)
from .backend import array_module, implementation
from .checks import float_array, same_dtype


def _rows(xp, a):
    return xp.ascontiguousarray(a.reshape(-1, a.shape[-1]))


def bernoulli_loglik(logits, x, want_grad=False):
    """sum_j x_j l_j - softplus(l_j) over the last axis; logits (*S, *B, N), x (*B, N).

    The leading dims of ``logits`` are samples that share ``x``. Returns ``(loglik of shape
    logits.shape[:-1], grad wrt logits or None)``."""
    float_array("bernoulli_loglik logits", logits)
    float_array("bernoulli_loglik x", x)
    same_dtype("bernoulli_loglik", logits, x)
    if logits.shape[logits.ndim - x.ndim:] != x.shape:
        raise ValueError(f"bernoulli_loglik: x of shape {x.shape} does not match the trailing dims of "
                         f"logits {logits.shape}")
    xp = array_module(logits, x)
    l2, x2 = _rows(xp, logits), _rows(xp, x)
    d = xp.empty_like(l2) if want_grad else xp.empty((0, l2.shape[1]), l2.dtype)
    out = implementation("bernoulli_loglik", l2, x2)(l2, x2, d)
    return out.reshape(logits.shape[:-1]), (d.reshape(logits.shape) if want_grad else None)


def diag_normal_kl(mu, sigma, want_grad=False):
    """KL(N(mu, diag sigma^2) || N(0, I)) over the last axis; mu, sigma (*B, D) with sigma > 0.

    Returns ``(kl of shape (*B,), (dkl/dmu, dkl/dsigma) or None)``."""
    float_array("diag_normal_kl mu", mu)
    float_array("diag_normal_kl sigma", sigma)
    same_dtype("diag_normal_kl", mu, sigma)
    if mu.shape != sigma.shape:
        raise ValueError(f"diag_normal_kl: mu {mu.shape} and sigma {sigma.shape} must have one shape")
    xp = array_module(mu, sigma)
    m2, s2 = _rows(xp, mu), _rows(xp, sigma)
    if want_grad:
        dm, ds = xp.empty_like(m2), xp.empty_like(s2)
    else:
        dm = ds = xp.empty((0, m2.shape[1]), m2.dtype)
    out = implementation("diag_normal_kl", m2, s2)(m2, s2, dm, ds)
    grads = (dm.reshape(mu.shape), ds.reshape(mu.shape)) if want_grad else None
    return out.reshape(mu.shape[:-1]), grads
