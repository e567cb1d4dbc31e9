"""Activations on float arrays: fused with a dense layer's bias (forward in place, backward from the
output), and on their own (the same kernels with a zero bias, over the array's rows)."""
from . import activation_cpu  # noqa: F401  (registers the CPU kernels)
from .activations import activation_code
from .arithmetic import contiguous, copy_into
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
    """Gradient through y = act(h + b): returns (dL/dh of shape (M, N), dL/db of shape (N,)). For the
    identity without ``out``, dL/dh is g itself (not a copy: the caller must not write to it)."""
    float_array("bias_activation_grad g", g, 2)
    float_array("bias_activation_grad y", y, 2)
    same_dtype("bias_activation_grad", g, y)
    if g.shape != y.shape or g.ndim != 2:
        raise ValueError(f"bias_activation_grad: g and y must both be (M, N), got {g.shape} and {y.shape}")
    if out is None:
        gh = g if _known(activation) == "linear" and g.flags.c_contiguous else array_module(g, y).empty_like(g)
    else:
        gh = out
    gb = implementation("bias_act_backward", g, y)(g, y, _known(activation), gh)
    return gh, gb


def _rows(a):
    """A C-contiguous ``a`` of any shape as a 2-D view (M, N): its rows over the last axis."""
    cols = a.shape[-1] if a.ndim and a.size else a.size
    return a.reshape(-1 if cols else 1, cols)


def activation(x, name):
    """act(x) elementwise, a new array of x's shape and dtype (float32 or float64; x is not modified)."""
    float_array("activation x", x, 0)
    xp = array_module(x)
    y = copy_into(x, xp.empty(x.shape, x.dtype))
    h = _rows(y)
    implementation("bias_act_forward", h)(h, xp.zeros(h.shape[1], dtype=h.dtype), _known(name))
    return y


def activation_grad(g, y, name):
    """g * act'(x) from the output y = act(x) (g cast to y's dtype; both of y's shape)."""
    float_array("activation_grad y", y, 0)
    if g.shape != y.shape:
        raise ValueError(f"activation_grad: g {g.shape} and y {y.shape} must have one shape")
    xp = array_module(g, y)
    g2 = _rows(contiguous(g) if g.dtype == y.dtype else copy_into(g, xp.empty(g.shape, y.dtype)))
    y2 = _rows(contiguous(y))
    gh = xp.empty(g2.shape, g2.dtype)
    implementation("bias_act_backward", g2, y2)(g2, y2, _known(name), gh)  # (its bias sums go unused)
    return gh.reshape(y.shape)
