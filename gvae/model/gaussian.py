"""Gaussian pieces shared by the posteriors and the likelihoods: log 2 pi, positive parameters with a
floor, the standard normal's log-density, and Gaussians whose precision is P = L L^T with L in band
storage, built from unconstrained network outputs (each O(n |stencil|)):

    L[0] = softplus(raw[0]) + floor,  L[k>0] = raw[k] * mask[k],
    log N(y; mu, P^-1) = -|L^T (y - mu)|^2 / 2 + sum_i log L_ii - n/2 log 2 pi,
    y = mu + L^-T eps.
"""
import math

from .. import ops

LOG_2PI = math.log(2 * math.pi)


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
    k = raw.shape[-2]
    diag = positive(raw[..., :1, :], floor)
    if k == 1:
        return diag
    return ops.concatenate2(diag, raw[..., 1:, :] * off_mask.like(raw), axis=-2)


# Every factor the model builds (band_factor's, the AR(1) family's) has a positive diagonal by
# construction, and a NaN in it reaches the loss, which training checks: the model's band operations
# skip the kernels' verdict on L (check=False), which on a device reads flags back to the host per call.

def band_log_density(L, offsets, y, mu):
    """log N(y; mu, (L L^T)^-1) summed over the last axis."""
    u = ops.band_matvec_t(L, offsets, y - mu, check=False)
    return -0.5 * ops.sum(u * u, axis=-1) + ops.band_logdet(L, check=False) - 0.5 * y.shape[-1] * LOG_2PI


def band_sample(L, offsets, mu, eps):
    """mu + L^-T eps (eps standard normal, broadcast against L's batch dims)."""
    return mu + ops.band_solve_t(L, offsets, eps, check=False)
