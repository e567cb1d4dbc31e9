"""Optimiser kernels over flat parameter buffers."""
import math

import numpy as np

from . import adam_cpu  # noqa: F401  (registers the CPU kernels)
from .backend import implementation
from .checks import float_array, same_dtype


def sum_squares(g):
    """sum(g**2) of a flat array, as a Python float (accumulated in float64)."""
    float_array("sum_squares g", g, 1)
    return float(implementation("sum_squares", g)(g.reshape(-1)))


def sum_squares_array(g):
    """sum(g**2) of a flat array as a float64 array of shape (1,) on g's device, not read (no
    synchronisation: what a CUDA graph can record)."""
    float_array("sum_squares_array g", g, 1)
    return implementation("sum_squares_array", g)(g.reshape(-1))


def _flat_buffers(name, p, g, m, v):
    for what, a in (("p", p), ("g", g), ("m", m), ("v", v)):
        float_array(f"{name} {what}", a, 1)
        if a.ndim != 1 or a.shape != p.shape or not a.flags.c_contiguous:
            raise ValueError(f"{name}: {what} must be flat and contiguous with p's shape {p.shape}")
    same_dtype(name, p, g, m, v)


def _average_args(name, p, average, decay):
    """(average, decay) as the kernels take them: (None, 0.0) without an average, else the checked buffer
    (flat, contiguous, p's shape and dtype) and decay in [0, 1)."""
    if average is None:
        if decay is not None:
            raise ValueError(f"{name}: decay is the average's; give average too, or neither")
        return None, 0.0
    float_array(f"{name} average", average, 1)
    if average.ndim != 1 or average.shape != p.shape or not average.flags.c_contiguous:
        raise ValueError(f"{name}: average must be flat and contiguous with p's shape {p.shape}")
    same_dtype(name, p, average)
    if decay is None or not 0 <= decay < 1:
        raise ValueError(f"{name}: decay must lie in [0, 1) with an average, got {decay}")
    return average, float(decay)


def adam_constants(lr, beta1, beta2, eps, step, clip_norm=None):
    """The float64 (rate, eps_hat, clip) of Adam's step ``step`` (from 1) that :func:`adam_update_guarded`
    reads and :func:`adam_update` passes its kernels: rate = lr sqrt(c2) / c1 and eps_hat = eps sqrt(c2)
    with c1 = 1 - beta1^step and c2 = 1 - beta2^step (the one place they are computed, so that both steps
    round them alike), clip = ``clip_norm`` or infinity."""
    if step < 1:
        raise ValueError(f"adam_constants: step counts from 1, got {step}")
    c1, c2 = 1.0 - beta1 ** step, 1.0 - beta2 ** step
    return lr * math.sqrt(c2) / c1, eps * math.sqrt(c2), math.inf if clip_norm is None else float(clip_norm)


def adam_update_guarded(p, g, m, v, *, hyper, norm2, loss, beta1, beta2, average=None, decay=None):
    """:func:`adam_update` with its step's constants and its guard in arrays on the buffers' device, so
    that nothing is read from the device (a CUDA graph can record it): ``hyper`` float64 (3,), the step's
    :func:`adam_constants`; the gradient scaled by clip / sqrt(norm2[0]) where that norm exceeds clip;
    nothing written (``average`` included) unless ``norm2[0]`` (float64 (1,), :func:`sum_squares_array`)
    and ``loss[0]`` (the step's loss, p's dtype) are finite. The same bits as :func:`adam_update` given
    the same step."""
    _flat_buffers("adam_update_guarded", p, g, m, v)
    average, decay = _average_args("adam_update_guarded", p, average, decay)
    for what, a, dtype, size in (("hyper", hyper, np.float64, 3), ("norm2", norm2, np.float64, 1),
                                 ("loss", loss, p.dtype, 1)):
        if a.dtype != dtype or a.size != size or not a.flags.c_contiguous:
            raise ValueError(f"adam_update_guarded: {what} must be a contiguous {np.dtype(dtype)} array of {size} "
                             f"value(s), got {a.dtype} of shape {a.shape}")
    implementation("adam_update_guarded", p, g, m, v, hyper, norm2, loss, *(() if average is None else (average,)))(
        p, g, m, v, hyper.reshape(-1), norm2.reshape(-1), loss.reshape(-1), float(beta1), float(beta2), average, decay)


def adam_update(p, g, m, v, *, lr, beta1, beta2, eps, step, scale=1.0, average=None, decay=None):
    """One Adam step in place on flat, equally shaped, contiguous buffers (see adam_cpu); with ``average``
    (a buffer like p) and ``decay`` in [0, 1), the Polyak average's step too, average <- decay average +
    (1 - decay) p on the new p, in the same pass: the bits of :func:`adam_update` then
    :func:`average_update`."""
    _flat_buffers("adam_update", p, g, m, v)
    average, decay = _average_args("adam_update", p, average, decay)
    if step < 1:
        raise ValueError(f"adam_update: step counts from 1, got {step}")
    rate, eps_hat, _ = adam_constants(float(lr), float(beta1), float(beta2), float(eps), int(step))
    implementation("adam_update", p, g, m, v, *(() if average is None else (average,)))(p, g, m, v, rate, eps_hat, float(beta1), float(beta2), float(scale),
                                              average, decay)


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
