"""The gamma distribution's pieces for deep exponential families (issue 53): draws by the inverse CDF, the
derivative of a draw in the shape (implicit reparameterisation), log Gamma and digamma."""
from . import gamma_cpu  # noqa: F401  (registers the CPU kernels)
from .backend import implementation
from .checks import float_array, same_dtype


def _one_shape(name, alpha, other, other_name):
    float_array(f"{name} alpha", alpha, 0)
    float_array(f"{name} {other_name}", other, 0)
    same_dtype(name, alpha, other)
    if alpha.shape != other.shape:
        raise ValueError(f"{name}: alpha {alpha.shape} and {other_name} {other.shape} must have one shape")


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
