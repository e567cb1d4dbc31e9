"""Gaussians with a sparse precision P = L L^T, L lower-triangular with nonzeros on a stencil of
diagonals (band storage, docs/reference/api.md section 1): chain, grid, extended grid, and the dense reference.

Encoder head: mu (d) then K rows of d band values; the main diagonal goes through softplus + floor,
the off-diagonals are free but multiplied by a 0/1 mask that removes slots outside the matrix and the
lattice's wrap-around links. With u = L^T (z - mu):

    z = mu + L^-T eps,   log q(z) = -|u|^2 / 2 + sum_i log L_ii - d/2 log 2 pi,
    KL(q || N(0, I)) = (tr Sigma + |mu|^2 - d) / 2 + sum_i log L_ii,

each in O(d |stencil|), the trace and diag(Sigma) (the selected inversion) in O(d w^2) for bandwidth w.
"""
from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from ... import kernels, ops
from ..constants import DeviceConstant
from ..gaussian import LOG_2PI, band_factor, band_log_density, band_precision_merge, band_sample
from ..lattice import chain_offsets, extgrid_offsets, grid_offsets, lattice_mask, lattice_shape
from .base import Family, PosteriorParams, dense_check


@dataclass(frozen=True, eq=False)
class BandedParams(PosteriorParams):
    """q = N(mu, (L L^T)^-1): ``L`` (B, K, d) the Cholesky factor of the precision in band storage on the
    stencil ``offsets`` (a tuple of K ints, 0 first; docs/reference/api.md section 1), L_ii > 0."""

    L: object
    offsets: tuple


class Banded(Family):
    """A band family; subclasses choose the stencil (``stencil(d) -> offsets``; lattice families also
    the mask of ``layout(d) -> (offsets, mask (K, d))``)."""

    banded = True
    mergeable = True
    record = BandedParams

    @abstractmethod
    def stencil(self, d):
        """The band offsets for latent dimension d."""

    def __init__(self, floor=1e-4, grid_shape=None):
        super().__init__(floor, grid_shape)
        self._layouts = {}
        self._off_masks = {}

    def layout(self, d):
        """(offsets, float64 NumPy mask of shape (K, d)) for latent dimension d, computed once per d."""
        if d not in self._layouts:
            self._layouts[d] = self._layout(d)
        return self._layouts[d]

    def off_mask(self, d):
        """The mask's off-diagonal rows (K - 1, d) as a DeviceConstant: on each device once per d."""
        if d not in self._off_masks:
            self._off_masks[d] = DeviceConstant(self.layout(d)[1][1:])
        return self._off_masks[d]

    def _layout(self, d):
        offsets = self.stencil(d)
        i = np.arange(d)
        return offsets, np.stack([(i >= o).astype(np.float64) for o in offsets])

    def head_size(self, d):
        # From the stencil alone: the mask of layout(d) is K x d values, and a head size is asked of sizes
        # too large to hold (gvae.training.memory refuses them from it).
        return (1 + len(self.stencil(d))) * d

    def split(self, h, d):
        offsets = self.layout(d)[0]
        k = len(offsets)
        raw = h[..., d:].reshape(h.shape[:-1] + (k, d))
        return BandedParams(h[..., :d], band_factor(raw, self.off_mask(d), self.floor), offsets)

    def sample(self, q, eps):
        return band_sample(q.L, q.offsets, q.mu, eps)

    def log_prob(self, q, z):
        return band_log_density(q.L, q.offsets, z, q.mu)

    # check=False: L is positive by construction (see gvae.model.gaussian).
    def kl(self, q):
        return ops.band_normal_kl(q.L, q.offsets, q.mu, check=False)

    def entropy(self, q):
        d = q.mu.shape[-1]
        return 0.5 * d * (1.0 + LOG_2PI) - ops.band_logdet(q.L, check=False)

    def variance(self, q):
        return ops.band_diag_inv(q.L, q.offsets, check=False)

    def precision(self, q):
        d = q.L.shape[-1]
        dense_check(f"{self.name}.precision", tuple(q.L.shape[:-2]) + (d, d), 2)  # L and L L^T
        L = dense_factor(kernels.to_host(ops.value_of(q.L)), q.offsets)
        return L @ np.swapaxes(L, -1, -2)

    def merge(self, q, p):
        """The Ladder VAE's precision-weighted merge with p = N(m, diag s^2): precision L L^T + diag(s^-2),
        banded with the full band (0, 1, ..., w) of the stencil's largest offset w, factored by the banded
        Cholesky kernel; the record holds that factor on the full band
        (:func:`gvae.model.gaussian.band_precision_merge`). O(d w^2): O(d) for the chain, O(d c^2) for a
        grid or extended grid of c columns (w = c or c + 1)."""
        mean, L, full = band_precision_merge(q.L, q.offsets, q.mu, p.mu, p.sigma)
        return BandedParams(mean, L, full)

    def factor_diagonals(self, q, most=None):
        """The stencil's first ``most`` diagonals (all when None) as the band storage holds them (see
        :meth:`Family.factor_diagonals`); ``free`` is the layout's mask. A merged q (:meth:`merge`) holds
        the full band: its diagonals, every existing entry free."""
        d = q.mu.shape[-1]
        offsets, mask = self.layout(d)
        if tuple(q.offsets) != tuple(offsets):
            offsets = tuple(q.offsets)
            mask = (np.arange(d) >= np.array(offsets)[:, None]).astype(np.float64)
        offsets = tuple(int(o) for o in offsets[:most])
        values = np.asarray(kernels.to_host(ops.value_of(q.L)), dtype=np.float64)[..., :len(offsets), :]
        return offsets, values, mask[:len(offsets)] != 0

    def _link(self, offset, d):
        return "previous unit" if offset == 1 else None


def dense_factor(L, offsets):
    """The dense (…, n, n) float64 lower-triangular NumPy matrix stored in band form ``L`` (…, K, n), a
    host array (a reference for tests and pictures); a ValueError where it cannot fit in memory."""
    L = np.asarray(L, dtype=np.float64)
    n = L.shape[-1]
    dense_check("dense_factor", L.shape[:-2] + (n, n), 1)
    out = np.zeros(L.shape[:-2] + (n, n))
    for k, o in enumerate(offsets):
        i = np.arange(o, n)
        out[..., i, i - o] = L[..., k, o:]
    return out


class Chain(Banded):
    """Lower-bidiagonal L: each latent unit linked to the previous one."""
    name = "chain"

    def stencil(self, d):
        return chain_offsets() if d > 1 else (0,)


class Full(Banded):
    """Dense lower-triangular L (all d diagonals): the O(d^3) reference for the other families."""
    name = "full"

    def stencil(self, d):
        return tuple(range(d))

    def head_size(self, d):
        return (1 + d) * d


class _Lattice(Banded):
    on_lattice = True

    @staticmethod
    @abstractmethod
    def lattice_offsets(rows, cols):
        """The stencil's offsets on a rows x cols lattice."""

    def stencil(self, d):
        return self.lattice_offsets(*lattice_shape(d, self.grid_shape))

    def _layout(self, d):
        offsets = self.stencil(d)
        return offsets, lattice_mask(offsets, *lattice_shape(d, self.grid_shape))

    def _link(self, offset, d):
        cols = lattice_shape(d, self.grid_shape)[1]
        return {1: "left", cols - 1: "upper right", cols: "up", cols + 1: "upper left"}.get(offset)


class Grid(_Lattice):
    """Latent units on an r x c lattice, each linked to its left and upper neighbours: (0, 1, c)."""
    name = "grid"

    @staticmethod
    def lattice_offsets(rows, cols):
        return grid_offsets(rows, cols)


class ExtGrid(_Lattice):
    """The grid plus both upper diagonals: (0, 1, c-1, c, c+1)."""
    name = "extgrid"

    @staticmethod
    def lattice_offsets(rows, cols):
        return extgrid_offsets(rows, cols)
