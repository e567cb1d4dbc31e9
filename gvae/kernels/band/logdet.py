"""Front of the log-determinant of a banded factor (Numba: logdet_cpu.py; CUDA: logdet.cu,
logdet_cuda.py) and its gradient."""
import math

from . import logdet_cpu  # noqa: F401  (registers the CPU kernels)
from ..arithmetic import binary, copy_into
from ..backend import array_module, implementation
from .layout import _read, _shape, _verdict, _weights


def band_logdet(L, *, check=True):
    """log det L = sum_i log L[..., 0, i], shape ``L.shape[:-2]``."""
    K, n = _shape("band_logdet", L)
    xp = array_module(L)
    F = math.prod(L.shape[:-2])
    Lc = _read(xp, L, (F, K, n))
    out = xp.empty(F, dtype=L.dtype)
    if F:
        flags = implementation("band_logdet", Lc)(Lc, out)
        if check:
            _verdict("band_logdet", flags, L, None)
    return out.reshape(L.shape[:-2])


def band_logdet_grad(L, g, *, check=True):
    """g[..., None] * d log det L / dL: ``g / L[..., 0, :]`` on the main diagonal, zero elsewhere; ``g``
    broadcasts to ``L.shape[:-2]``. Checks as :func:`band_logdet` (a diagonal entry <= 0, where the
    log-determinant does not exist, or NaN/inf in the diagonal), and NaN/inf in ``g``."""
    name = "band_logdet_grad"
    _shape(name, L)
    xp = array_module(L)
    gb = _weights(name, L, g, L.shape[:-2])
    d = L[..., 0, :]
    if check:  # before dividing by a zero
        _verdict(name, (int(xp.count_nonzero(d <= 0)), 0.0), L, None)
    # Kernels, the zeros too, so that a recorded step holds them and its replay writes every slot.
    gL = copy_into(0.0, xp.empty(L.shape, dtype=L.dtype))
    binary("divide", gb[..., None], d, out=gL[..., 0, :])
    if check:  # the quotients carry any NaN/inf of g or d (an infinite d through d's own sum)
        chk = float(d.sum(dtype=xp.float64)) + float(gL[..., 0, :].sum(dtype=xp.float64))
        _verdict(name, (0, chk), L, None, [("g", gb)])
    return gL
