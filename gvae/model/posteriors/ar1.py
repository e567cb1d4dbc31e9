"""rho-VAE: Sigma = s T(rho), T_ij = rho^|i-j|, from two scalars per data point (s > 0, |rho| < 1).

The AR(1) process read backwards, eps_i = (z_i - rho z_{i+1}) / sqrt(1 - rho^2), eps_d = z_d, gives
P = Sigma^-1 = L L^T with L lower-bidiagonal in band storage (offsets (0, 1)):
L_ii = 1 / sqrt(s (1 - rho^2)) for i < d, L_dd = 1 / sqrt(s), L_{i,i-1} = -rho / sqrt(s (1 - rho^2)).
Sampling and log q use the band kernels in O(d); the KL is closed form (Ferdowsi et al., "rho-VAE: Autoregressive
parametrization of the VAE encoder", eq. 6):
KL = (d s + |mu|^2 - d - d log s - (d - 1) log(1 - rho^2)) / 2; every marginal variance is s.
"""
from dataclasses import dataclass

import numpy as np

from ... import ops
from ..constants import DeviceConstant
from ..gaussian import LOG_2PI, positive
from .banded import Banded, BandedParams


# |rho| <= 1 - RHO_MARGIN keeps 1 - rho^2 away from zero by construction.
RHO_MARGIN = 1e-4


@dataclass(frozen=True, eq=False)
class AR1Params(BandedParams):
    """The band factor L (B, 2, d) on offsets (0, 1) (one row, (0,), when d = 1) of :class:`BandedParams`,
    and the two scalars it is made of: ``s`` > 0 and ``rho``, |rho| < 1, each (B,)."""

    s: object
    rho: object


class AR1(Banded):
    name = "ar1"
    record = AR1Params
    mergeable = False  # a merged precision is no longer an AR(1) process's

    def stencil(self, d):
        return (0, 1) if d > 1 else (0,)

    def __init__(self, floor=1e-4, grid_shape=None):
        super().__init__(floor, grid_shape)
        self._indicators = {}

    def indicators(self, d):
        """DeviceConstants of shape (d,): [i = d-1], [i < d-1] and [i > 0], on each device once per d."""
        if d not in self._indicators:
            i = np.arange(d)
            self._indicators[d] = tuple(DeviceConstant(v.astype(np.float64))
                                        for v in (i == d - 1, i < d - 1, i > 0))
        return self._indicators[d]

    def head_size(self, d):
        return d + 2

    def split(self, h, d):
        scalar = h.dtype.type  # NumPy scalars keep the arrays' dtype on every device
        last, not_last, not_first = self.indicators(d)
        s = positive(h[..., d:d + 1], self.floor)
        rho = ops.tanh(h[..., d + 1:d + 2]) * scalar(1 - RHO_MARGIN)
        one_minus = 1 - rho * rho
        # 1 / sqrt, not a power of -1/2: the root and the division are kernels, which a recorded step holds
        a = 1 / ops.sqrt(s * one_minus)
        diag = a * not_last.like(h) + 1 / ops.sqrt(s) * last.like(h)
        offsets, _ = self.layout(d)
        L = diag[..., None, :]
        if d > 1:
            L = ops.concatenate2(L, (-rho * a * not_first.like(h))[..., None, :], axis=-2)
        return AR1Params(h[..., :d], L, offsets, s[..., 0], rho[..., 0])

    def kl(self, q):
        mu, s, rho = q.mu, q.s, q.rho
        d = mu.shape[-1]
        return 0.5 * (d * s + ops.sum(mu * mu, axis=-1) - d - d * ops.log(s)
                      - (d - 1) * ops.log(1 - rho * rho))

    def variance(self, q):
        return ops.broadcast_to(q.s[..., None], q.mu.shape)

    def entropy(self, q):
        d = q.mu.shape[-1]
        return 0.5 * d * (1.0 + LOG_2PI) + 0.5 * (d * ops.log(q.s) + (d - 1) * ops.log(1 - q.rho ** 2))
