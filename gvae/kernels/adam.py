"""Optimiser kernels over flat parameter buffers."""
from . import adam_cpu  # noqa: F401  (registers the CPU kernels)
from .backend import implementation
from .checks import float_array, same_dtype


def sum_squares(g):
    """sum(g**2) of a flat array, as a Python float (accumulated in float64)."""
    float_array("sum_squares g", g, 1)
    return float(implementation("sum_squares", g)(g.reshape(-1)))


def adam_update(p, g, m, v, *, lr, beta1, beta2, eps, step, scale=1.0):
    """One Adam step in place on flat, equally shaped, contiguous buffers (see adam_cpu)."""
    for name, a in (("p", p), ("g", g), ("m", m), ("v", v)):
        float_array(f"adam_update {name}", a, 1)
        if a.ndim != 1 or a.shape != p.shape or not a.flags.c_contiguous:
            raise ValueError(f"adam_update: {name} must be flat and contiguous with p's shape {p.shape}")
    same_dtype("adam_update", p, g, m, v)
    if step < 1:
        raise ValueError(f"adam_update: step counts from 1, got {step}")
    implementation("adam_update", p, g, m, v)(p, g, m, v, float(lr), float(beta1), float(beta2),
                                              float(eps), int(step), float(scale))
