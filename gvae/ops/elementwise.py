"""Elementwise primitives with broadcasting; the core reduces broadcast gradients. Addition, subtraction,
multiplication and division, forward and backward, are gvae's arithmetic kernels (:func:`gvae.kernels.binary`:
NumPy's results, and on the CPU tasks that a recorded training step replays natively), negation too (a
product by -1), and so are ``exp``, ``log``, ``log1p``, ``sqrt`` and ``absolute`` (:func:`gvae.kernels.unary`:
the C library's functions on the CPU, recorded or not); the rest are the arrays' own operators, and the
other maths functions come from the arrays' module (see :func:`gvae.kernels.array_module`), so each runs on
the device its arguments live on. The activations (softplus, sigmoid, tanh, relu, elu) are the kernels of
the dense layers, whose one table in :mod:`gvae.kernels.activations` writes each derivative as a function of
the output."""
from .. import kernels
from ..autodiff import defvjp, primitive
from ..kernels import array_module

__all__ = ["add", "subtract", "multiply", "divide", "power", "negative", "absolute", "square", "sqrt", "exp",
           "log", "log1p", "softplus", "sigmoid", "tanh", "relu", "elu"]


_binary = kernels.binary


@primitive
def add(a, b):
    return _binary("add", a, b)


defvjp(add, lambda ans, a, b: lambda g: g, lambda ans, a, b: lambda g: g)


@primitive
def subtract(a, b):
    return _binary("subtract", a, b)


defvjp(subtract, lambda ans, a, b: lambda g: g, lambda ans, a, b: lambda g: _binary("multiply", g, -1.0))


@primitive
def multiply(a, b):
    return _binary("multiply", a, b)


defvjp(multiply, lambda ans, a, b: lambda g: _binary("multiply", g, b),
       lambda ans, a, b: lambda g: _binary("multiply", g, a))


@primitive
def divide(a, b):
    return _binary("divide", a, b)


defvjp(divide, lambda ans, a, b: lambda g: _binary("divide", g, b),
       lambda ans, a, b: lambda g: _binary("divide", _binary("multiply", _binary("multiply", g, -1.0), ans), b))


@primitive
def negative(x):
    return _binary("multiply", x, -1.0)  # (-x's bits: the sign flipped, exactly)


defvjp(negative, lambda ans, x: lambda g: _binary("multiply", g, -1.0))


@primitive
def absolute(x):
    """|x|; its derivative sign(x) is taken as 0 at x = 0 (a subgradient)."""
    return kernels.unary("absolute", x)


defvjp(absolute, lambda ans, x: lambda g: _binary("multiply", g, kernels.unary("sign", x)))


@primitive
def power(x, p):
    """x ** p (x > 0 wherever p is differentiated or non-integer)."""
    return x ** p


defvjp(power,
       lambda ans, x, p: lambda g: g * p * x ** (p - 1),
       lambda ans, x, p: lambda g: g * ans * array_module(x).log(x))


@primitive
def square(x):
    return x * x


defvjp(square, lambda ans, x: lambda g: 2 * g * x)


@primitive
def sqrt(x):
    return kernels.unary("sqrt", x)


defvjp(sqrt, lambda ans, x: lambda g: _binary("divide", _binary("multiply", g, 0.5), ans))


@primitive
def exp(x):
    return kernels.unary("exp", x)


defvjp(exp, lambda ans, x: lambda g: _binary("multiply", g, ans))


@primitive
def log(x):
    return kernels.unary("log", x)


defvjp(log, lambda ans, x: lambda g: _binary("divide", g, x))


@primitive
def log1p(x):
    return kernels.unary("log1p", x)


defvjp(log1p, lambda ans, x: lambda g: _binary("divide", g, _binary("add", x, 1.0)))


def _activation(name, doc):
    """The primitive ``name``(x) of the activation kernels, its VJP from the output."""
    prim = primitive(lambda x: kernels.activation(x, name), name=name)
    prim.__doc__ = doc
    return defvjp(prim, lambda ans, x: lambda g: kernels.activation_grad(g, ans, name))


softplus = _activation("softplus", "log(1 + e^x), stable for large |x|.")
sigmoid = _activation("sigmoid", "1 / (1 + e^-x).")
tanh = _activation("tanh", "tanh x.")
relu = _activation("relu", "max(x, 0).")
elu = _activation("elu", "x for x > 0, e^x - 1 otherwise (alpha = 1).")
