"""Fused bias + activation for dense layers: forward in place, backward from the output."""
from . import activation_cpu  # noqa: F401  (registers the CPU kernels)
from .activations import activation_code
from .backend import array_module, implementation
from .checks import float_array, same_dtype


def _known(name):
    activation_code(name)  # raises for an unknown name
    return name


def bias_activation(h, b, activation):
    """act(h + b) for h (M, N), b (N,), overwriting and returning h (which must be C-contiguous)."""
    float_array("bias_activation h", h, 2)
    float_array("bias_activation b", b, 1)
    same_dtype("bias_activation", h, b)
    if h.ndim != 2 or b.shape != (h.shape[1],):
        raise ValueError(f"bias_activation: expected h (M, N) and b (N,), got {h.shape} and {b.shape}")
    if not h.flags.c_contiguous:
        raise ValueError("bias_activation: h must be C-contiguous (it is overwritten in place)")
    implementation("bias_act_forward", h, b)(h, b, _known(activation))
    return h


def bias_activation_grad(g, y, activation, out=None):
    """Gradient through y = act(h + b): returns (dL/dh of shape (M, N), dL/db of shape (N,))."""
    float_array("bias_activation_grad g", g, 2)
    float_array("bias_activation_grad y", y, 2)
    same_dtype("bias_activation_grad", g, y)
    if g.shape != y.shape or g.ndim != 2:
        raise ValueError(f"bias_activation_grad: g and y must both be (M, N), got {g.shape} and {y.shape}")
    gh = array_module(g, y).empty_like(g) if out is None else out
    gb = implementation("bias_act_backward", g, y)(g, y, _known(activation), gh)
    return gh, gb
