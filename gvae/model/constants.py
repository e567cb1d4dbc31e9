"""Constant arrays the model multiplies by (band masks, the AR(1) family's first/last indicators): built
once on the host, copied once to each device and dtype they meet, and reused there, never per step."""
from ..autodiff import value_of
from ..kernels import device_of, to_device


class DeviceConstant:
    """The NumPy array ``host``, available next to any array: ``like(x)`` is it in x's dtype on x's
    device (copied there on first use, then cached)."""

    def __init__(self, host):
        self.host = host
        self._copies = {}

    def like(self, x):
        x = value_of(x)
        key = (device_of(x), x.dtype)
        copy = self._copies.get(key)
        if copy is None:
            copy = self._copies[key] = to_device(self.host.astype(x.dtype), key[0])
        return copy
