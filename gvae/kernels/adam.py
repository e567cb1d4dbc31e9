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


def average_update(a, p, *, decay):
    """One step of an exponential moving average in place on flat, equally shaped, contiguous buffers:
    a <- decay a + (1 - decay) p, decay in [0, 1) (Polyak averaging of the parameters p into a)."""
    for name, x in (("a", a), ("p", p)):
        float_array(f"average_update {name}", x, 1)
        if x.ndim != 1 or x.shape != a.shape or not x.flags.c_contiguous:
            raise ValueError(f"average_update: {name} must be flat and contiguous with a's shape {a.shape}")
    same_dtype("average_update", a, p)
    if not 0 <= decay < 1:
        raise ValueError(f"average_update: decay must lie in [0, 1), got {decay}")
    implementation("average_update", a, p)(a, p, float(decay))
