"""Differentiable gamma and Poisson pieces for deep exponential families, each VJP beside its
forward: a reparameterised gamma draw (implicit reparameterisation: Figurnov, Mohamed and Mnih, "Implicit
Reparameterization Gradients", 2018), the gamma and Poisson log-densities, and the Bernoulli-Poisson link
that models binary data by a Poisson rate (a pixel is on when its count is)."""
import numpy as np
from scipy import special

from .. import kernels
from ..autodiff import defvjp_joint, primitive, value_of
from ..kernels import gamma as _gamma
from ..rules.broadcast import unbroadcast

__all__ = ["gamma_sample", "gamma_log_prob", "poisson_log_prob", "bernoulli_poisson_loglik", "poisson_draw"]

# Every step of these primitives and of their VJPs is a gvae kernel (the arithmetic's, the gamma module's):
# a training step made of them is recorded and replayed natively (gvae.kernels.cpu.programs). A host
# scalar (a prior's constant) stays a scalar, and what is computed of scalars alone is a constant.


def _host_scalar(v):
    return isinstance(v, (int, float, np.generic))


def _op(name, a, b):
    """a name b: NumPy's (SciPy's for xlogy, xdivy's limit) scalar arithmetic where both are host scalars,
    else the arithmetic kernel."""
    if not (_host_scalar(a) and _host_scalar(b)):
        return kernels.binary(name, a, b)
    if name == "xlogy":
        return special.xlogy(a, b)
    if name == "xdivy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a == 0 and not np.isnan(b), 0, np.divide(a, b))[()]
    return getattr(np, name)(a, b)


def _log(v):
    return np.log(v) if _host_scalar(v) else kernels.unary("log", v)


def _full(x, shape):
    """The array x broadcast to ``shape``, C-contiguous (a kernel's copy where it is not already)."""
    return kernels.contiguous(x if np.shape(x) == tuple(shape) else kernels.broadcast_to(x, shape))


def _reduced(g, arg):
    """The gradient ``g`` summed back to the argument's shape by the kernels' sums."""
    return unbroadcast(g, np.shape(arg), kernels.sum_axes)


@primitive
def gamma_sample(alpha, beta, u):
    """z ~ Gamma(alpha, rate beta) from uniforms u in (0, 1): z = P^-1(alpha, u) / beta (P the regularised
    incomplete gamma function); alpha, beta, u broadcast together. Differentiable in alpha (at fixed u,
    dz/dalpha = -(dP/dalpha) / p(z), the implicit gradient) and beta (dz/dbeta = -z / beta)."""
    return _sample_forward(alpha, beta, u)[0]


def _sample_forward(alpha, beta, u):
    """(the draw, (the draw, the unit-rate draw P^-1(alpha, u))): the backward reads the latter as it is."""
    shape = np.broadcast_shapes(np.shape(alpha), np.shape(beta), np.shape(u))
    unit = _gamma.gamma_inverse_cdf(_full(alpha, shape), _full(u, shape))
    ans = kernels.binary("divide", unit, beta)
    return ans, (ans, unit)


def _sample_vjp(residual, argnums, alpha, beta, u):
    # The draw's derivative in the shape at the forward's unit-rate draw (the inverse CDF is not redone).
    ans, unit = residual
    dz = _gamma.gamma_draw_shape_grad(_full(alpha, ans.shape), unit) if 0 in argnums else None

    def vjp(g):
        d_alpha = _reduced(_op("divide", _op("multiply", g, dz), beta), alpha) if 0 in argnums else None
        d_beta = _reduced(_op("divide", _op("multiply", _op("multiply", g, -1.0), ans), beta), beta) \
            if 1 in argnums else None
        return d_alpha, d_beta, None
    return vjp


defvjp_joint(gamma_sample, _sample_vjp, forward=_sample_forward)


def _of_shape(name, alpha, shape):
    """log Gamma (``"lgamma"``) or digamma of alpha broadcast to ``shape``; of a host scalar (a prior's
    constant) on the host, as a scalar of its type: no copy to the device, which a device's array module
    would need (CuPy's broadcast_to refuses host scalars) and a captured step could not make."""
    fn = getattr(_gamma, name)
    if _host_scalar(alpha):
        value = fn(np.array([alpha], dtype=np.float64))[0]
        return alpha.dtype.type(value) if isinstance(alpha, np.generic) else float(value)
    return fn(_full(alpha, shape))


@primitive
def gamma_log_prob(z, alpha, beta):
    """log Gamma(z; alpha, rate beta) = alpha log beta + (alpha - 1) log z - beta z - log Gamma(alpha),
    broadcasting (alpha and beta may be host scalars), with 0 log 0 = 0 (at z = 0, alpha = 1: log beta, as
    SciPy's); gradients for z, alpha and beta."""
    shape = np.broadcast_shapes(np.shape(z), np.shape(alpha), np.shape(beta))
    first = _op("add", _op("multiply", alpha, _log(beta)), _op("xlogy", _op("subtract", alpha, 1.0), z))
    return _op("subtract", _op("subtract", first, _op("multiply", beta, z)), _of_shape("lgamma", alpha, shape))


def _gamma_vjp(ans, argnums, z, alpha, beta):
    def vjp(g):
        d_z = d_alpha = d_beta = None
        if 0 in argnums:  # g ((alpha - 1) / z - beta), the first term 0 where alpha = 1
            d_z = _reduced(_op("multiply", g, _op("subtract", _op("xdivy", _op("subtract", alpha, 1.0), z), beta)), z)
        if 1 in argnums:  # g (log beta + log z - digamma(alpha))
            logs = _op("add", _log(beta), _log(z))
            d_alpha = _reduced(_op("multiply", g, _op("subtract", logs, _of_shape("digamma", alpha, ans.shape))),
                               alpha)
        if 2 in argnums:  # g (alpha / beta - z)
            d_beta = _reduced(_op("multiply", g, _op("subtract", _op("divide", alpha, beta), z)), beta)
        return d_z, d_alpha, d_beta
    return vjp


defvjp_joint(gamma_log_prob, _gamma_vjp)


@primitive
def poisson_log_prob(k, rate):
    """log Poisson(k; rate) = k log rate - rate - log Gamma(k + 1) for counts k >= 0 (any real k: the same
    formula), broadcasting, with 0 log 0 = 0 (k = 0 at rate 0: 0); the gradient for the rate (k is data):
    k / rate - 1, its first term 0 where k = 0."""
    shape = np.broadcast_shapes(np.shape(k), np.shape(rate))
    factorial = _gamma.lgamma(kernels.binary("add", _full(k, shape), 1.0))
    return _op("subtract", _op("subtract", _op("xlogy", k, rate), rate), factorial)


def _poisson_vjp(ans, argnums, k, rate):
    if 0 in argnums:
        raise ValueError("poisson_log_prob: no gradient with respect to the counts k")
    return lambda g: (None, _reduced(_op("multiply", g, _op("subtract", _op("xdivy", k, rate), 1.0)), rate))


defvjp_joint(poisson_log_prob, _poisson_vjp)


@primitive
def bernoulli_poisson_loglik(rate, x):
    """sum_j x_j log(1 - exp(-r_j)) - (1 - x_j) r_j over the last axis: log p(x|r) for binary x_j = [n_j > 0],
    n_j ~ Poisson(r_j), so P(x_j = 1) = 1 - exp(-r_j); rate (*S, *B, N) >= 0, x (*B, N) -> (*S, *B). The log is
    taken as log(-expm1(-r)), exact for small rates, with 0 log 0 = 0 (an off pixel at rate 0 has
    probability 1). Gradient for the rate: x / expm1(r) - (1 - x), its first term 0 where x = 0."""
    on = kernels.binary("multiply", kernels.unary("expm1", kernels.binary("multiply", rate, -1.0)), -1.0)
    terms = kernels.binary("subtract", kernels.binary("xlogy", x, on),
                           kernels.binary("multiply", kernels.binary("subtract", 1.0, x), rate))
    return kernels.sum_axes(terms, axis=-1)


def _bernoulli_poisson_vjp(ans, argnums, rate, x):
    if 1 in argnums:
        raise ValueError("bernoulli_poisson_loglik: no gradient with respect to the observations x")

    def vjp(g):
        slope = kernels.binary("subtract", kernels.binary("xdivy", x, kernels.unary("expm1", rate)),
                               kernels.binary("subtract", 1.0, x))
        return kernels.binary("multiply", g[..., None], slope), None
    return vjp


defvjp_joint(bernoulli_poisson_loglik, _bernoulli_poisson_vjp)


def poisson_draw(rate, u, most):
    """Counts k ~ Poisson(rate) by the inverse CDF at uniforms u (broadcasting): the least k in 0..``most``
    with P(K <= k) > u, accumulated in float64; rate's dtype. Not differentiable (a draw): ``rate`` may be
    traced, and its value is used."""
    rate = value_of(rate)
    shape = np.broadcast_shapes(np.shape(rate), np.shape(u))
    return _gamma.poisson_draw(_full(rate, shape), _full(u, shape), most)
