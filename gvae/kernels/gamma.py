"""The gamma distribution's pieces for deep exponential families (issue 53): draws by the inverse CDF with
the derivative of the draw in the shape (implicit reparameterisation), log Gamma and digamma."""
from . import gamma_cpu  # noqa: F401  (registers the CPU kernels)
from .backend import implementation
from .checks import float_array, same_dtype


def gamma_inverse_cdf(alpha, u):
    """(z, dz/dalpha) for shapes alpha > 0 and uniforms u in (0, 1) of one shape and dtype: z ~ Gamma(alpha, 1)
    as the inverse CDF at u, and its derivative in alpha at fixed u (computed in float64)."""
    float_array("gamma_inverse_cdf alpha", alpha, 0)
    float_array("gamma_inverse_cdf u", u, 0)
    same_dtype("gamma_inverse_cdf", alpha, u)
    if alpha.shape != u.shape:
        raise ValueError(f"gamma_inverse_cdf: alpha {alpha.shape} and u {u.shape} must have one shape")
    return implementation("gamma_inverse_cdf", alpha, u)(alpha, u)


def lgamma(x):
    """log Gamma(x), elementwise."""
    float_array("lgamma x", x, 0)
    return implementation("gamma_special", x)("lgamma", x)


def digamma(x):
    """digamma(x) = d log Gamma(x) / dx, elementwise."""
    float_array("digamma x", x, 0)
    return implementation("gamma_special", x)("digamma", x)
