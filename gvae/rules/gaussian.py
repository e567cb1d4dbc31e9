"""The Gaussian N(mu, (L L^T)^-1) with L a band factor (*fbatch, K, n) on ``offsets``: its log-density,
entropy, KL against a diagonal Gaussian and reparameterised sample, written once for gvae's model (on
its tape), gvae.torch's and gvae.jax's BandedPrecisionNormal in terms of the operators each passes
(:class:`GaussianOps`). Each costs O(n K) per factor and right-hand side, the KL's marginal variances
O(n K w), w = offsets[-1] (selected inversion)::

    log N(y; mu, (L L^T)^-1) = log det L - |L^T (y - mu)|^2 / 2 - n log(2 pi) / 2
    H = n (1 + log 2 pi) / 2 - log det L
    KL(N(mu, (L L^T)^-1) || N(m, diag s^2))
        = sum_i log s_i + log det L + (sum_i Sigma_ii / s_i^2 + |(mu - m) / s|^2 - n) / 2,  Sigma = (L L^T)^-1
    y = mu + L^-T eps,  eps ~ N(0, I)
"""
import math
from typing import Callable, NamedTuple, Optional

LOG_2PI = math.log(2 * math.pi)


class GaussianOps(NamedTuple):
    """The operators the rules call: the band operators ``solve_t(L, offsets, v)`` (L^-T v), ``matvec_t``
    (L^T v), ``logdet(L)`` (log det L, shape ``L.shape[:-2]``), ``trace_inv(L, offsets)`` (tr Sigma) and
    ``diag_inv(L, offsets)`` (diag Sigma), and the elementwise ``square`` and ``log`` of the arrays. The KL
    alone needs ``trace_inv``, ``diag_inv`` and ``log``."""

    solve_t: Callable
    matvec_t: Callable
    logdet: Callable
    square: Callable
    trace_inv: Optional[Callable] = None
    diag_inv: Optional[Callable] = None
    log: Optional[Callable] = None


def log_density(ops, L, offsets, y, mu):
    """log N(y; mu, (L L^T)^-1) over the last axis: y (*S, *B, n), mu broadcasting with it -> (*S, *B)."""
    u = ops.matvec_t(L, offsets, y - mu)
    return ops.logdet(L) - 0.5 * ops.square(u).sum(-1) - 0.5 * L.shape[-1] * LOG_2PI


def entropy(ops, L):
    """The entropy n (1 + log 2 pi) / 2 - log det L, shape ``L.shape[:-2]``."""
    return 0.5 * L.shape[-1] * (1 + LOG_2PI) - ops.logdet(L)


def kl_to_diagonal(ops, L, offsets, mu, loc, scale):
    """KL(N(mu, (L L^T)^-1) || N(loc, diag scale^2)), mu (*B, n), loc and scale broadcasting to it -> (*B,).
    sum_i Sigma_ii / s_i^2 is tr(Sigma) / s^2 (``trace_inv``) when the scale is one number per distribution
    (no axis, or a last axis of size 1), else through diag(Sigma) (``diag_inv``)."""
    n = L.shape[-1]
    if scale.ndim == 0 or scale.shape[-1] == 1:
        s = scale if scale.ndim == 0 else scale[..., 0]
        spread = ops.trace_inv(L, offsets) / ops.square(s)
        log_scale = n * ops.log(s)
    else:
        spread = (ops.diag_inv(L, offsets) / ops.square(scale)).sum(-1)
        log_scale = ops.log(scale).sum(-1)
    mahalanobis = ops.square((mu - loc) / scale).sum(-1)
    return log_scale + ops.logdet(L) + 0.5 * (spread + mahalanobis - n)


def sample(ops, L, offsets, mu, eps):
    """mu + L^-T eps: eps standard normal (*S, *B, n), broadcasting with L's batch and mu."""
    return mu + ops.solve_t(L, offsets, eps)
