"""rho-VAE: Sigma = s T(rho), T_ij = rho^|i-j|, from two scalars per data point (s > 0, |rho| < 1).

The AR(1) process read backwards, eps_i = (z_i - rho z_{i+1}) / sqrt(1 - rho^2), eps_d = z_d, gives
P = Sigma^-1 = L L^T with L lower-bidiagonal in band storage (offsets (0, 1)):
L_ii = 1 / sqrt(s (1 - rho^2)) for i < d, L_dd = 1 / sqrt(s), L_{i,i-1} = -rho / sqrt(s (1 - rho^2)).
Sampling and log q use the band kernels in O(d); the KL is closed form (Ferdowsi et al., "rho-VAE: Autoregressive
parametrization of the VAE encoder", eq. 6):
KL = (d s + |mu|^2 - d - d log s - (d - 1) log(1 - rho^2)) / 2.
"""
import numpy as np

from ... import ops
from ..gaussian import LOG_2PI, positive
from .banded import Banded


# |rho| <= 1 - RHO_MARGIN keeps 1 - rho^2 away from zero by construction.
RHO_MARGIN = 1e-4


class AR1(Banded):
    name = "ar1"

    def stencil(self, d):
        return (0, 1) if d > 1 else (0,)

    def head_size(self, d):
        return d + 2

    def split(self, h, d):
        dt = h.dtype
        s = positive(h[..., d:d + 1], self.floor)
        rho = ops.tanh(h[..., d + 1:d + 2]) * np.asarray(1 - RHO_MARGIN, dt)
        one_minus = 1 - rho * rho
        a = ops.power(s * one_minus, np.asarray(-0.5, dt))
        last = np.zeros(d, dt)
        last[-1] = 1
        diag = a * (1 - last) + ops.power(s, np.asarray(-0.5, dt)) * last
        offsets, _ = self.layout(d)
        L = diag[..., None, :]
        if d > 1:
            first = np.ones(d, dt)
            first[0] = 0
            L = ops.concatenate2(L, (-rho * a * first)[..., None, :], axis=-2)
        return {"mu": h[..., :d], "L": L, "offsets": offsets, "s": s[..., 0], "rho": rho[..., 0]}

    def kl(self, q):
        mu, s, rho = q["mu"], q["s"], q["rho"]
        d = mu.shape[-1]
        return 0.5 * (d * s + ops.sum(mu * mu, axis=-1) - d - d * ops.log(s)
                      - (d - 1) * ops.log(1 - rho * rho))

    def entropy(self, q):
        d = q["mu"].shape[-1]
        return 0.5 * d * (1.0 + LOG_2PI) + 0.5 * (d * ops.log(q["s"]) + (d - 1) * ops.log(1 - q["rho"] ** 2))
