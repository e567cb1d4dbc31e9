"""gvae.torch's banded-precision Gaussian as a Pyro distribution, its coordinates in any order.

x (*batch, D) with x[..., order] ~ N(loc[order], (L L^T)^-1), L lower-triangular in band storage: ``factor``
(K, D) on ``offsets`` (docs/api.md, section 1), in the permuted coordinates y = x[order]. Sampling,
log-density and entropy are O(D K) and the marginal variances O(D K w) (w = offsets[-1]), through
:class:`gvae.torch.BandedPrecisionNormal`'s operators; the permutation is a gather.
"""
import torch
from pyro.distributions import TorchDistribution, constraints

from ..torch import BandedPrecisionNormal

__all__ = ["BandedNormal"]


class BandedNormal(TorchDistribution):
    """N(loc, P^-1) with P[order][:, order] = L L^T: ``loc`` (*batch, D) in x's coordinates, ``factor``
    (K, D) and ``offsets`` as :class:`gvae.torch.BandedPrecisionNormal`'s, ``order`` an int64 (D,)
    permutation on loc's device or None (the identity); float32 or float64. Reparameterised."""
    arg_constraints = {}  # checked by the band itself (a positive main diagonal)
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, factor, offsets, order=None, validate_args=None):
        self.order = order
        self.inverse = None if order is None else torch.argsort(order)
        self.band = BandedPrecisionNormal(self._permuted(loc), factor, offsets, validate_args=validate_args)
        super().__init__(self.band.batch_shape, self.band.event_shape, validate_args=validate_args)

    def _permuted(self, x):
        """x[..., order]: from x's coordinates to the band's."""
        return x if self.order is None else x[..., self.order]

    def _unpermuted(self, y):
        """y[..., inverse]: from the band's coordinates to x's."""
        return y if self.inverse is None else y[..., self.inverse]

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(BandedNormal, _instance)
        new.order, new.inverse = self.order, self.inverse
        new.band = self.band.expand(batch_shape)
        super(BandedNormal, new).__init__(new.band.batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=torch.Size()):
        """loc + (L^-T eps)[inverse], eps ~ N(0, I): (*sample_shape, *batch, D)."""
        return self._unpermuted(self.band.rsample(sample_shape))

    def log_prob(self, value):
        """log N(value; loc, P^-1), through the band's coordinates: (*sample, *batch)."""
        return self.band.log_prob(self._permuted(value))

    def entropy(self):
        """D (1 + log 2 pi) / 2 - log det L: ``batch_shape``."""
        return self.band.entropy()

    @property
    def mean(self):
        return self._unpermuted(self.band.mean)

    @property
    def variance(self):
        """diag(P^-1) exactly, by selected inversion: (*batch, D)."""
        return self._unpermuted(self.band.variance)

    @property
    def precision_matrix(self):
        """P as a dense (*batch, D, D) tensor (for small D)."""
        return self._unpermuted_matrix(self.band.precision_matrix)

    @property
    def covariance_matrix(self):
        """P^-1 as a dense (*batch, D, D) tensor (for small D)."""
        return self._unpermuted_matrix(self.band.covariance_matrix)

    def _unpermuted_matrix(self, a):
        """a[..., inverse, :][..., inverse]: a (D, D) matrix from the band's coordinates to x's."""
        return a if self.inverse is None else a[..., self.inverse, :][..., self.inverse]
