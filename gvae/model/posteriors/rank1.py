"""DLGM's rank-one-plus-diagonal precision P = D + u u^T (the DLGM of Rezende, Mohamed & Wierstra, "Stochastic Backpropagation and
Approximate Inference in Deep Generative Models"), everything in O(d).

With D^-1 = diag(1/D_i), t = u^T D^-1 u and eta = 1 / (1 + t):
Sigma = D^-1 - eta D^-1 u u^T D^-1,  diag Sigma = D^-1 - eta (D^-1 u)^2,  log det Sigma = log eta - log det D,
R = D^-1/2 - c D^-1 u u^T D^-1/2 with R R^T = Sigma, where the seed's c = (1 - sqrt(eta)) / t is
rewritten as 1 / (sqrt(1 + t) (sqrt(1 + t) + 1)) so that u -> 0 divides nothing by zero.
"""
from dataclasses import dataclass

import numpy as np

from ... import kernels, ops
from ..gaussian import LOG_2PI, positive
from .base import Family, PosteriorParams, dense_check


@dataclass(frozen=True, eq=False)
class Rank1Params(PosteriorParams):
    """q = N(mu, (D + u u^T)^-1): ``D`` > 0 and ``u`` (B, d), and what sampling, log q and the KL share,
    computed once: ``Dinv`` = 1 / D (B, d), ``t`` = u^T D^-1 u (B,), ``c`` = 1 / (sqrt(1 + t)
    (sqrt(1 + t) + 1)) (B,), ``logdet_p`` = log det P (B,)."""

    D: object
    u: object
    Dinv: object
    t: object
    c: object
    logdet_p: object


class Rank1(Family):
    name = "rank1"
    record = Rank1Params

    def head_size(self, d):
        return 3 * d

    def split(self, h, d):
        D = positive(h[..., d:2 * d], self.floor)
        u = h[..., 2 * d:]
        Dinv = 1 / D
        t = ops.sum(u * u * Dinv, axis=-1)
        root = ops.sqrt(1 + t)
        return Rank1Params(h[..., :d], D, u, Dinv, t, c=1 / (root * (root + 1)),
                           logdet_p=ops.sum(ops.log(D), axis=-1) + ops.log1p(t))

    def sample(self, q, eps):
        a = eps * ops.sqrt(q.Dinv)
        ua = ops.sum(q.u * a, axis=-1)
        return q.mu + a - (q.c * ua)[..., None] * (q.Dinv * q.u)

    def log_prob(self, q, z):
        w = z - q.mu
        uw = ops.sum(q.u * w, axis=-1)
        quad = ops.sum(q.D * w * w, axis=-1) + uw * uw
        return -0.5 * quad + 0.5 * q.logdet_p - 0.5 * z.shape[-1] * LOG_2PI

    def kl(self, q):
        mu, Dinv, u = q.mu, q.Dinv, q.u
        trace = ops.sum(Dinv, axis=-1) - ops.sum(u * u * Dinv * Dinv, axis=-1) / (1 + q.t)
        return 0.5 * (trace + ops.sum(mu * mu, axis=-1) - mu.shape[-1] + q.logdet_p)

    def variance(self, q):
        w = q.Dinv * q.u
        return q.Dinv - w * w / (1 + q.t)[..., None]

    def entropy(self, q):
        return 0.5 * q.mu.shape[-1] * (1.0 + LOG_2PI) - 0.5 * q.logdet_p

    def precision(self, q):
        d = q.D.shape[-1]
        dense_check(f"{self.name}.precision", tuple(q.D.shape[:-1]) + (d, d), 3)  # diag D, u u^T and their sum
        D = kernels.to_host(ops.value_of(q.D)).astype(np.float64)
        u = kernels.to_host(ops.value_of(q.u)).astype(np.float64)
        return np.einsum("...i,ij->...ij", D, np.eye(D.shape[-1])) + u[..., :, None] * u[..., None, :]
