"""gvae.jax's banded-precision Gaussian as a NumPyro distribution, its coordinates in any order.

x (*batch, D) with x[..., order] ~ N(loc[order], (L L^T)^-1), L lower-triangular in band storage: ``factor``
(K, D) on ``offsets`` (docs/reference/api.md, section 1), in the permuted coordinates y = x[order]. Sampling,
log-density and entropy are O(D K) and the marginal variances O(D K w) (w = offsets[-1]), through
:class:`gvae.jax.BandedPrecisionNormal`; the permutation is a gather (:class:`gvae.guide_layout.PermutedBand`).
"""
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, constraints

from ..guide_layout import PermutedBand
from ..jax import BandedPrecisionNormal

__all__ = ["BandedNormal"]


class BandedNormal(PermutedBand, Distribution):
    """N(loc, P^-1) with P[order][:, order] = L L^T: ``loc`` (*batch, D) in x's coordinates, ``factor``
    (K, D) and ``offsets`` as :class:`gvae.jax.BandedPrecisionNormal`'s, ``order`` an int (D,) permutation
    or None (the identity); float32 or float64. Reparameterised: ``sample`` is differentiable in loc and
    factor."""
    arg_constraints = {"loc": constraints.real_vector, "factor": constraints.independent(constraints.real, 2)}
    support = constraints.real_vector
    reparametrized_params = ["loc", "factor"]
    pytree_data_fields = ("loc", "factor", "order", "inverse", "band")
    pytree_aux_fields = ("offsets",)

    def __init__(self, loc, factor, offsets, order=None, *, validate_args=None):
        self.loc, self.factor, self.offsets = jnp.asarray(loc), jnp.asarray(factor), tuple(offsets)
        self.order = None if order is None else jnp.asarray(order)
        self.inverse = None if order is None else jnp.asarray(np.argsort(np.asarray(order)))
        self.band = BandedPrecisionNormal(self._permuted(self.loc), self.factor, self.offsets)
        super().__init__(self.band.batch_shape, self.band.event_shape, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        """loc + (L^-T eps)[inverse], eps ~ N(0, I) drawn with ``key``: (*sample_shape, *batch, D)."""
        return self._unpermuted(self.band.rsample(key, sample_shape))

    def rsample(self, key, sample_shape=()):
        return self.sample(key, sample_shape)
