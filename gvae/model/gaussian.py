"""Gaussian pieces shared by the posteriors and the likelihoods: log 2 pi, positive parameters with a
floor, the standard normal's log-density, and Gaussians whose precision is P = L L^T with L in band
storage, built from unconstrained network outputs (each O(n |stencil|)):

    L[0] = softplus(raw[0]) + floor,  L[k>0] = raw[k] * mask[k],
    log N(y; mu, P^-1) = -|L^T (y - mu)|^2 / 2 + sum_i log L_ii - n/2 log 2 pi,
    y = mu + L^-T eps,

the last two the formulas of :mod:`gvae.rules.gaussian` on the tape's operators.
"""
import math
from functools import partial

import numpy as np

from .. import kernels, ops
from ..autodiff import value_of
from ..rules import gaussian as rules
from ..rules.gaussian import LOG_2PI


def positive(raw, floor):
    """softplus(raw) + floor: positive by construction and bounded away from zero (floor > 0)."""
    return ops.softplus(raw) + raw.dtype.type(floor)


def positive_inverse(value, floor):
    """The raw parameter (a float) for which :func:`positive` gives ``value`` > floor: log(e^(value - floor) - 1)."""
    return math.log(math.expm1(value - floor))


def std_normal_log_prob(z):
    """log N(z; 0, I) summed over the last axis."""
    return -0.5 * ops.sum(z * z, axis=-1) - 0.5 * z.shape[-1] * LOG_2PI


def band_factor(raw, off_mask, floor):
    """raw (..., K, n) unconstrained -> L (..., K, n): positive main diagonal, masked off-diagonals.

    ``off_mask`` (a :class:`~gvae.model.constants.DeviceConstant` of shape (K - 1, n), 0/1) removes the
    off-diagonal slots outside the matrix and the lattice's wrap-around links."""
    return ops.band_factor(raw, off_mask.like(raw), floor)


# Every factor the model builds (band_factor's, the AR(1) family's) has a positive diagonal by
# construction, and a NaN in it reaches the loss, which training checks: the model's band operations
# skip the kernels' verdict on L (check=False), which on a device reads flags back to the host per call.
_OPS = rules.GaussianOps(solve_t=partial(ops.band_solve_t, check=False),
                         matvec_t=partial(ops.band_matvec_t, check=False),
                         logdet=partial(ops.band_logdet, check=False),
                         square=lambda u: u * u)  # a product on the tape: its gradient g u + g u, as ever


def band_log_density(L, offsets, y, mu):
    """log N(y; mu, (L L^T)^-1) summed over the last axis (:func:`gvae.rules.gaussian.log_density`)."""
    return rules.log_density(_OPS, L, offsets, y, mu)


def band_sample(L, offsets, mu, eps):
    """mu + L^-T eps (eps standard normal, broadcast against L's batch dims)."""
    return rules.sample(_OPS, L, offsets, mu, eps)


def band_gram(L, offsets):
    """P = L L^T in band storage on the full band (0, 1, ..., w), w = offsets[-1]: (..., w + 1, n), zero
    in the slots that do not exist. Diagonal m of P is sum over the pairs of stencil offsets
    o_a - o_b = m of L[a, i] L[b, i - m] (i >= o_a), so O(n K^2) products for K offsets."""
    n = L.shape[-1]
    batch = L.shape[:-2]
    xp = kernels.array_module(value_of(L))
    diagonals = [None] * (offsets[-1] + 1)
    for a, oa in enumerate(offsets):
        for b, ob in enumerate(offsets[:a + 1]):
            # L_{i, i-oa} L_{i-m, i-oa} with m = oa - ob: columns i >= oa of diagonal m
            term = L[..., a, oa:] * L[..., b, ob:n - oa + ob]
            if oa:
                term = ops.concatenate2(xp.zeros(batch + (oa,), dtype=term.dtype), term)
            m = oa - ob
            diagonals[m] = term if diagonals[m] is None else diagonals[m] + term
    rows = [ops.reshape(xp.zeros(batch + (n,), dtype=L.dtype) if d is None else d, batch + (1, n))
            for d in diagonals]  # a diagonal that no pair of offsets reaches is zero
    out = rows[0]
    for row in rows[1:]:
        out = ops.concatenate2(out, row, axis=-2)
    return out


def band_precision_merge(L, offsets, mu, prior_mu, prior_sigma):
    """The Ladder VAE's precision-weighted merge of N(mu, (L L^T)^-1) (L on the stencil ``offsets``) with
    N(prior_mu, diag prior_sigma^2): the Gaussian proportional to their product,

        P = L L^T + diag(prior_sigma^-2),   mean = P^-1 (L L^T mu + prior_sigma^-2 prior_mu),

    as (mean, L_P, full offsets (0, ..., w)) with P = L_P L_P^T, L_P in band storage on the full band (the
    factor fills in every diagonal up to w = offsets[-1]). The batch shapes broadcast ((B,) against
    (S, B) for a prior per sample of the layer above). O(n w^2) for the factorisation, O(n w) for the
    mean's solves."""
    full = kernels.full_band(offsets[-1])
    lam = 1.0 / (prior_sigma * prior_sigma)
    P = band_gram(L, offsets)
    batch = tuple(np.broadcast_shapes(P.shape[:-2], lam.shape[:-1]))
    P = ops.broadcast_to(P, batch + P.shape[-2:])
    n = P.shape[-1]
    diag = ops.reshape(P[..., 0, :] + lam, batch + (1, n))
    P = diag if len(full) == 1 else ops.concatenate2(diag, P[..., 1:, :], axis=-2)
    LP = ops.band_cholesky(P, full, check=False)
    r = ops.band_matvec(L, offsets, ops.band_matvec_t(L, offsets, mu, check=False), check=False) + lam * prior_mu
    mean = ops.band_solve_t(LP, full, ops.band_solve(LP, full, r, check=False), check=False)
    return mean, LP, full
