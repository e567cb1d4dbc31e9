"""The activation functions, in the one table that the Numba kernels, the CUDA kernels and the ops read.

Each activation's integer code is its position in :data:`ACTIVATIONS`; the Numba kernels hold one loop
per code and the CUDA source one template specialisation per code (its ``enum`` is generated from this
table). Every derivative is written as a function of the output y = act(h), so a backward pass keeps
only the layer's output:

    linear    y = h                       dy/dh = 1
    relu      y = max(h, 0)               dy/dh = [y > 0]
    elu       y = h or e^h - 1 (h <= 0)   dy/dh = 1 or y + 1
    tanh      y = tanh h                  dy/dh = 1 - y^2
    softplus  y = log(1 + e^h)            dy/dh = 1 - e^-y
    sigmoid   y = 1 / (1 + e^-h)          dy/dh = y (1 - y)

This module imports nothing but the standard library, so the CUDA path loads without Numba.
"""
ACTIVATIONS = ("linear", "relu", "elu", "tanh", "softplus", "sigmoid")
CODES = {name: code for code, name in enumerate(ACTIVATIONS)}


def activation_code(name):
    """The integer code of the activation called ``name`` (ValueError naming the known ones)."""
    try:
        return CODES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None
