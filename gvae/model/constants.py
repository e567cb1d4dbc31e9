"""Constant arrays the model multiplies by (band masks, the AR(1) family's first/last indicators, DARN's
autoregressive masks): built once on the host, copied once to each device and dtype they meet, and reused
there, never per step."""
import numpy as np

from ..autodiff import value_of
from ..kernels import device_of, to_device


class DeviceConstant:
    """The NumPy array ``host``, or the one the function ``host`` returns on first use, available next to
    any array: ``like(x)`` is it in x's dtype on x's device (copied there on first use, then cached)."""

    def __init__(self, host):
        self.host = host
        self._copies = {}

    def like(self, x):
        x = value_of(x)
        key = (device_of(x), x.dtype)
        copy = self._copies.get(key)
        if copy is None:
            host = self.host() if callable(self.host) else self.host
            copy = self._copies[key] = to_device(host.astype(x.dtype), key[0])
        return copy


def units_before(n):
    """The (n, n) mask of the units before each unit (ones below the diagonal), made on first use: a model
    of n units is built, and its memory checked from its shapes, before any n x n array exists."""
    return DeviceConstant(lambda: np.tril(np.ones((n, n)), -1))
