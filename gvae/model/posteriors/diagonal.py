"""The mean-field Gaussian q(z|x) = N(mu, diag sigma^2) of the standard VAE."""
from dataclasses import dataclass

import numpy as np

from ... import kernels, ops
from ..gaussian import LOG_2PI, positive
from .base import Family, PosteriorParams, dense_check


@dataclass(frozen=True, eq=False)
class DiagonalParams(PosteriorParams):
    """q = N(mu, diag sigma^2): ``mu`` and ``sigma`` (B, d), sigma > 0. Also the form of a hierarchy's
    conditional prior p(z_l | z_{l+1})."""

    sigma: object


class Diagonal(Family):
    """Encoder head (mu, s) of size 2d; sigma = softplus(s) + floor."""

    name = "diagonal"
    record = DiagonalParams
    structured = False
    mergeable = True

    def head_size(self, d):
        return 2 * d

    def split(self, h, d):
        return DiagonalParams(h[..., :d], positive(h[..., d:], self.floor))

    def sample(self, q, eps):
        return q.mu + q.sigma * eps

    def log_prob(self, q, z):
        u = (z - q.mu) / q.sigma
        d = z.shape[-1]
        return -0.5 * ops.sum(u * u, axis=-1) - ops.sum(ops.log(q.sigma), axis=-1) - 0.5 * d * LOG_2PI

    def kl(self, q):
        return ops.diag_normal_kl(q.mu, q.sigma)

    def entropy(self, q):
        d = q.mu.shape[-1]
        return ops.sum(ops.log(q.sigma), axis=-1) + 0.5 * d * (1.0 + LOG_2PI)

    def variance(self, q):
        return q.sigma * q.sigma

    def precision(self, q):
        d = q.sigma.shape[-1]
        dense_check(f"{self.name}.precision", tuple(q.sigma.shape[:-1]) + (d, d), 1)
        s = kernels.to_host(ops.value_of(q.sigma)).astype(np.float64)
        return np.einsum("...i,ij->...ij", 1.0 / s ** 2, np.eye(s.shape[-1]))

    def merge(self, q, p):
        """The Ladder VAE's precision-weighted merge with p = N(m, diag s^2) (Sonderby et al., eq. 18-19),
        elementwise: sigma^2 = 1 / (sigma_q^-2 + s^-2), mu = (mu_q sigma_q^-2 + m s^-2) sigma^2; the
        batch shapes broadcast."""
        pq = 1.0 / (q.sigma * q.sigma)
        pp = 1.0 / (p.sigma * p.sigma)
        var = 1.0 / (pq + pp)
        return DiagonalParams((q.mu * pq + p.mu * pp) * var, ops.sqrt(var))
