"""Elementwise primitives with NumPy broadcasting; the core reduces broadcast gradients."""
import numpy as np
from scipy.special import expit

from ..autodiff import defvjp, primitive

__all__ = ["add", "subtract", "multiply", "divide", "power", "negative", "square", "sqrt", "exp",
           "log", "log1p", "softplus", "sigmoid", "tanh", "relu", "elu"]

add = primitive(np.add, name="add")
defvjp(add, lambda ans, a, b: lambda g: g, lambda ans, a, b: lambda g: g)

subtract = primitive(np.subtract, name="subtract")
defvjp(subtract, lambda ans, a, b: lambda g: g, lambda ans, a, b: lambda g: -g)

multiply = primitive(np.multiply, name="multiply")
defvjp(multiply, lambda ans, a, b: lambda g: g * b, lambda ans, a, b: lambda g: g * a)

divide = primitive(np.true_divide, name="divide")
defvjp(divide, lambda ans, a, b: lambda g: g / b, lambda ans, a, b: lambda g: -g * ans / b)

negative = primitive(np.negative, name="negative")
defvjp(negative, lambda ans, x: lambda g: -g)


@primitive
def power(x, p):
    """x ** p (x > 0 wherever p is differentiated or non-integer)."""
    return np.power(x, p)


defvjp(power,
       lambda ans, x, p: lambda g: g * p * np.power(x, p - 1),
       lambda ans, x, p: lambda g: g * ans * np.log(x))


@primitive
def square(x):
    return x * x


defvjp(square, lambda ans, x: lambda g: 2 * g * x)

sqrt = primitive(np.sqrt, name="sqrt")
defvjp(sqrt, lambda ans, x: lambda g: g * 0.5 / ans)

exp = primitive(np.exp, name="exp")
defvjp(exp, lambda ans, x: lambda g: g * ans)

log = primitive(np.log, name="log")
defvjp(log, lambda ans, x: lambda g: g / x)

log1p = primitive(np.log1p, name="log1p")
defvjp(log1p, lambda ans, x: lambda g: g / (1 + x))


@primitive
def softplus(x):
    """log(1 + e^x), stable for large |x|."""
    return np.logaddexp(0, x).astype(np.result_type(x), copy=False)


defvjp(softplus, lambda ans, x: lambda g: g * expit(x))


@primitive
def sigmoid(x):
    """1 / (1 + e^-x)."""
    return expit(x)


defvjp(sigmoid, lambda ans, x: lambda g: g * ans * (1 - ans))

tanh = primitive(np.tanh, name="tanh")
defvjp(tanh, lambda ans, x: lambda g: g * (1 - ans * ans))


@primitive
def relu(x):
    """max(x, 0)."""
    return np.maximum(x, 0)


defvjp(relu, lambda ans, x: lambda g: g * (x > 0))


@primitive
def elu(x):
    """x for x > 0, e^x - 1 otherwise (alpha = 1)."""
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


defvjp(elu, lambda ans, x: lambda g: g * np.where(x > 0, 1, ans + 1))
