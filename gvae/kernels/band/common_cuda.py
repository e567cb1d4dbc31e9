"""What the CUDA launchers of banded factors share (the CUDA side of :mod:`common_cpu`): the offsets on
the device, the flags the kernels add into, and the size checks of their 32-bit indices. Layouts and
the flags' meaning: ``band_common.cuh``.

Return values: the checked kernels return ``(bad, checksum)`` like their CPU twins, but as two 0-d
float64 CuPy arrays that stay on the device: ``band/layout.py``'s ``_verdict`` reads them with ``==``,
``int()`` and ``math.isfinite()``, which fetch them, while a call with ``check=False`` (every VJP)
never waits for the device.
"""
import numpy as np

from ..cuda.build import contiguous, int32

_offsets_on_device = {}


# K up to this is a template argument of the sequential kernels (band_solve and the selected inversion's
# band_trace_window and band_trace_band_grad), whose main loops then load their entries ahead of the
# serial path.
KC_MAX = 6


def compile_time_k(K):
    """The template argument KC for K diagonals: K itself up to KC_MAX, else 0 (any K, read at run time)."""
    return int(K) if K <= KC_MAX else 0


def device_offsets(offs, device):
    """``offs`` (NumPy int64, validated by band/layout.py) as a device int32 array, cached per device."""
    offs = np.asarray(offs, dtype=np.int64)
    key = (offs.tobytes(), device.id)
    d = _offsets_on_device.get(key)
    if d is None:
        import cupy
        with device:
            d = cupy.asarray(np.asarray(offs, dtype=np.int32))
        _offsets_on_device[key] = d
    return d


def new_flags():
    """Zeroed float64 (2,) on the current device: (diagonal entries <= 0, checksum), added into by a kernel."""
    import cupy
    return cupy.zeros(2, dtype=np.float64)


def verdict(flags):
    """The (bad, checksum) pair that band/layout.py's _verdict expects, as 0-d device arrays."""
    return flags[0], flags[1]


def sizes(name, L, rhs=None):
    """(F, K, n[, S]) of ``L`` (F, K, n) and the right-hand sides ``rhs`` (S, F, n) as int32, checking
    that both are C-contiguous and that the products the kernels index with 32-bit ints fit."""
    F, K, n = L.shape
    contiguous(name, L)
    if rhs is None:
        int32(name, F * K * n)
        return int32(name, F, K, n)
    contiguous(name, rhs)
    S = rhs.shape[0]
    if rhs.shape != (S, F, n):
        raise ValueError(f"{name}: right-hand sides of shape {rhs.shape} do not match L {L.shape}")
    int32(name, S * F * n, F * K * n)
    return int32(name, F, K, n, S)
