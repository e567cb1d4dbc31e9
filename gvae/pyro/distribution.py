"""gvae.torch's banded-precision Gaussian as a Pyro distribution, its coordinates in any order.

x (*batch, D) with x[..., order] ~ N(loc[order], (L L^T)^-1), L lower-triangular in band storage: ``factor``
(K, D) on ``offsets`` (docs/reference/api.md, section 1), in the permuted coordinates y = x[order]. Sampling,
log-density and entropy are O(D K) and the marginal variances O(D K w) (w = offsets[-1]), through
:class:`gvae.torch.BandedPrecisionNormal`'s operators; the permutation is a gather
(:class:`gvae.guide_layout.PermutedBand`).
"""
import torch
from pyro.distributions import TorchDistribution, constraints

from ..guide_layout import PermutedBand
from ..torch import BandedPrecisionNormal

__all__ = ["BandedNormal"]


class BandedNormal(PermutedBand, TorchDistribution):
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
