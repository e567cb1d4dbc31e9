"""The gamma distribution's pieces for deep exponential families: draws by the inverse CDF, the
derivative of a draw in the shape (implicit reparameterisation), log Gamma and digamma; and Poisson draws by
the inverse CDF."""
from . import gamma_cpu  # noqa: F401  (registers the CPU kernels)
from .backend import implementation
from .checks import float_array, same_dtype


def _one_shape(name, alpha, other, other_name, first_name="alpha"):
    float_array(f"{name} {first_name}", alpha, 0)
    float_array(f"{name} {other_name}", other, 0)
    same_dtype(name, alpha, other)
    if alpha.shape != other.shape:
        raise ValueError(f"{name}: {first_name} {alpha.shape} and {other_name} {other.shape} must have one shape")


def gamma_inverse_cdf(alpha, u):
    """z ~ Gamma(alpha, 1) as the inverse CDF at u, for shapes alpha > 0 and uniforms u in (0, 1) of one
    shape and dtype (computed in float64)."""
    _one_shape("gamma_inverse_cdf", alpha, u, "u")
    return implementation("gamma_inverse_cdf", alpha, u)(alpha, u)


def gamma_draw_shape_grad(alpha, z):
    """dz/dalpha of the draws z = P^-1(alpha, u) at fixed u (implicit reparameterisation), alpha and z of one
    shape and dtype (computed in float64)."""
    _one_shape("gamma_draw_shape_grad", alpha, z, "z")
    return implementation("gamma_draw_shape_grad", alpha, z)(alpha, z)


def lgamma(x):
    """log Gamma(x), elementwise."""
    float_array("lgamma x", x, 0)
    return implementation("gamma_special", x)("lgamma", x)


def digamma(x):
    """digamma(x) = d log Gamma(x) / dx, elementwise."""
    float_array("digamma x", x, 0)
    return implementation("gamma_special", x)("digamma", x)


def poisson_draw(rate, u, most):
    """Counts k ~ Poisson(rate) by the inverse CDF at uniforms u (rate >= 0 and u in [0, 1) of one shape and
    dtype): the least k in 0..``most`` with P(K <= k) > u, the probabilities accumulated in float64; rate's
    dtype; NaN where a rate is negative, infinite or NaN, or a u outside [0, 1]."""
    _one_shape("poisson_draw", rate, u, "u", "rate")
    if isinstance(most, bool) or not isinstance(most, int) or most < 0:
        raise ValueError(f"poisson_draw: most must be an int >= 0 (the largest count drawn), got {most!r}")
    return implementation("poisson_draw", rate, u)(rate, u, most)
