"""gvae.jax's banded-precision Gaussian as a NumPyro distribution, its coordinates in any order.

x (*batch, D) with x[..., order] ~ N(loc[order], (L L^T)^-1), L lower-triangular in band storage: ``factor``
(K, D) on ``offsets`` (docs/api.md, section 1), in the permuted coordinates y = x[order]. Sampling,
log-density and entropy are O(D K) and the marginal variances O(D K w) (w = offsets[-1]), through
:class:`gvae.jax.BandedPrecisionNormal`; the permutation is a gather.
"""
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, constraints

from ..jax import BandedPrecisionNormal

__all__ = ["BandedNormal"]


class BandedNormal(Distribution):
    """N(loc, P^-1) with P[order][:, order] = L L^T: ``loc`` (*batch, D) in x's coordinates, ``factor``
    (K, D) and ``offsets`` as :class:`gvae.jax.BandedPrecisionNormal`'s, ``order`` an int (D,) permutation
    or None (the identity); float32 or float64. Reparameterised: ``sample`` is differentiable in loc and
    factor."""
    arg_constraints = {"loc": constraints.real_vector, "factor": constraints.independent(constraints.real, 2)}
    support = constraints.real_vector
    reparametrized_params = ["loc", "factor"]
    pytree_data_fields = ("loc", "factor", "order", "inverse", "_band")
    pytree_aux_fields = ("offsets",)

    def __init__(self, loc, factor, offsets, order=None, *, validate_args=None):
        self.loc, self.factor, self.offsets = jnp.asarray(loc), jnp.asarray(factor), tuple(offsets)
        self.order = None if order is None else jnp.asarray(order)
        self.inverse = None if order is None else jnp.asarray(np.argsort(np.asarray(order)))
        self._band = BandedPrecisionNormal(self._permuted(self.loc), self.factor, self.offsets)
        super().__init__(self._band.batch_shape, self._band.event_shape, validate_args=validate_args)

    def _permuted(self, x):
        """x[..., order]: from x's coordinates to the band's."""
        return x if self.order is None else x[..., self.order]

    def _unpermuted(self, y):
        """y[..., inverse]: from the band's coordinates to x's."""
        return y if self.inverse is None else y[..., self.inverse]

    def sample(self, key, sample_shape=()):
        """loc + (L^-T eps)[inverse], eps ~ N(0, I) drawn with ``key``: (*sample_shape, *batch, D)."""
        return self._unpermuted(self._band.rsample(key, sample_shape))

    def rsample(self, key, sample_shape=()):
        return self.sample(key, sample_shape)

    def log_prob(self, value):
        """log N(value; loc, P^-1), through the band's coordinates: (*sample, *batch)."""
        return self._band.log_prob(self._permuted(value))

    def entropy(self):
        """D (1 + log 2 pi) / 2 - log det L: ``batch_shape``."""
        return self._band.entropy()

    @property
    def mean(self):
        return jnp.broadcast_to(self.loc, self.batch_shape + self.event_shape)

    @property
    def variance(self):
        """diag(P^-1) exactly, by selected inversion: (*batch, D)."""
        return self._unpermuted(self._band.variance)

    @property
    def precision_matrix(self):
        """P as a dense (*batch, D, D) array (for small D)."""
        return self._unpermuted_matrix(self._band.precision_matrix)

    @property
    def covariance_matrix(self):
        """P^-1 as a dense (*batch, D, D) array (for small D)."""
        return self._unpermuted_matrix(self._band.covariance_matrix)

    def _unpermuted_matrix(self, a):
        """a[..., inverse, :][..., inverse]: a (D, D) matrix from the band's coordinates to x's."""
        return a if self.inverse is None else a[..., self.inverse, :][..., self.inverse]
