"""Differentiable gamma and Poisson pieces for deep exponential families (issue 53), each VJP beside its
forward: a reparameterised gamma draw (implicit reparameterisation: Figurnov, Mohamed and Mnih, "Implicit
Reparameterization Gradients", 2018), the gamma and Poisson log-densities, and the Bernoulli-Poisson link
that models binary data by a Poisson rate (a pixel is on when its count is)."""
import numpy as np

from ..autodiff import defvjp_joint, primitive
from ..kernels import array_module
from ..kernels import gamma as _gamma
from ..rules.broadcast import unbroadcast

__all__ = ["gamma_sample", "gamma_log_prob", "poisson_log_prob", "bernoulli_poisson_loglik"]


@primitive
def gamma_sample(alpha, beta, u):
    """z ~ Gamma(alpha, rate beta) from uniforms u in (0, 1): z = P^-1(alpha, u) / beta (P the regularised
    incomplete gamma function); alpha, beta, u broadcast together. Differentiable in alpha (at fixed u,
    dz/dalpha = -(dP/dalpha) / p(z), the implicit gradient) and beta (dz/dbeta = -z / beta)."""
    xp = array_module(alpha, beta, u)
    a, b, uu = xp.broadcast_arrays(alpha, beta, u)
    return _gamma.gamma_inverse_cdf(xp.ascontiguousarray(a), xp.ascontiguousarray(uu)) / b


def _sample_vjp(ans, argnums, alpha, beta, u):
    # The draw's derivative in the shape at the unit-rate draw z = ans * beta (the inverse CDF is not redone).
    xp = array_module(alpha, beta, u)
    a, b = xp.broadcast_arrays(alpha, beta, ans)[:2]
    dz = _gamma.gamma_draw_shape_grad(xp.ascontiguousarray(a), xp.ascontiguousarray(ans * b))

    def vjp(g):
        return (unbroadcast(g * dz / b, np.shape(alpha)), unbroadcast(-g * ans / b, np.shape(beta)), None)
    return vjp


defvjp_joint(gamma_sample, _sample_vjp)


def _host_scalar(v):
    return isinstance(v, (int, float, np.generic))


def _of_shape(fn, alpha, shape, xp):
    """fn (``lgamma`` or ``digamma``) of alpha broadcast to ``shape``; of a host scalar (a prior's
    constant) on the host, as a scalar of its type: no copy to the device, which a device's array module
    would need (CuPy's broadcast_to refuses host scalars) and a captured step could not make."""
    if _host_scalar(alpha):
        value = fn(np.array([alpha], dtype=np.float64))[0]
        return alpha.dtype.type(value) if isinstance(alpha, np.generic) else float(value)
    return fn(xp.ascontiguousarray(xp.broadcast_to(alpha, shape)))


def _log(v, xp):
    return np.log(v) if _host_scalar(v) else xp.log(v)


@primitive
def gamma_log_prob(z, alpha, beta):
    """log Gamma(z; alpha, rate beta) = alpha log beta + (alpha - 1) log z - beta z - log Gamma(alpha),
    broadcasting (alpha and beta may be host scalars); gradients for z, alpha and beta."""
    xp = array_module(z, alpha, beta)
    shape = np.broadcast_shapes(np.shape(z), np.shape(alpha), np.shape(beta))
    return alpha * _log(beta, xp) + (alpha - 1.0) * xp.log(z) - beta * z - _of_shape(_gamma.lgamma, alpha, shape, xp)


def _gamma_vjp(ans, argnums, z, alpha, beta):
    xp = array_module(z, alpha, beta)

    def vjp(g):
        return (unbroadcast(g * ((alpha - 1.0) / z - beta), np.shape(z)),
                unbroadcast(g * (_log(beta, xp) + xp.log(z) - _of_shape(_gamma.digamma, alpha, ans.shape, xp)),
                            np.shape(alpha)),
                unbroadcast(g * (alpha / beta - z), np.shape(beta)))
    return vjp


defvjp_joint(gamma_log_prob, _gamma_vjp)


@primitive
def poisson_log_prob(k, rate):
    """log Poisson(k; rate) = k log rate - rate - log Gamma(k + 1) for counts k >= 0 (any real k: the same
    formula), broadcasting; the gradient for the rate (k is data)."""
    xp = array_module(k, rate)
    kk = xp.ascontiguousarray(xp.broadcast_to(k, np.broadcast_shapes(np.shape(k), np.shape(rate))))
    return k * xp.log(rate) - rate - _gamma.lgamma(kk + 1.0)


def _poisson_vjp(ans, argnums, k, rate):
    if 0 in argnums:
        raise ValueError("poisson_log_prob: no gradient with respect to the counts k")
    return lambda g: (None, unbroadcast(g * (k / rate - 1.0), np.shape(rate)))


defvjp_joint(poisson_log_prob, _poisson_vjp)


@primitive
def bernoulli_poisson_loglik(rate, x):
    """sum_j x_j log(1 - exp(-r_j)) - (1 - x_j) r_j over the last axis: log p(x|r) for binary x_j = [n_j > 0],
    n_j ~ Poisson(r_j), so P(x_j = 1) = 1 - exp(-r_j); rate (*S, *B, N) > 0, x (*B, N) -> (*S, *B). The log is
    taken as log(-expm1(-r)), exact for small rates. Gradient for the rate: x / expm1(r) - (1 - x)."""
    xp = array_module(rate, x)
    return xp.sum(x * xp.log(-xp.expm1(-rate)) - (1.0 - x) * rate, axis=-1)


def _bernoulli_poisson_vjp(ans, argnums, rate, x):
    if 1 in argnums:
        raise ValueError("bernoulli_poisson_loglik: no gradient with respect to the observations x")
    xp = array_module(rate, x)
    return lambda g: (g[..., None] * (x / xp.expm1(rate) - (1.0 - x)), None)


defvjp_joint(bernoulli_poisson_loglik, _bernoulli_poisson_vjp)
