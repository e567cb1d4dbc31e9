"""The model layer: networks, posterior families, observation models, objectives and the VAE, written
with the differentiable operations of :mod:`gvae.ops` (so they run on every array type the kernels do).

Add a posterior family in :mod:`gvae.model.posteriors` (a :class:`~gvae.model.posteriors.Family`
subclass listed in ``FAMILIES``), an observation model in :mod:`gvae.model.likelihoods`."""
from . import posteriors
from .layers import INITS
from .likelihoods import LIKELIHOODS, Likelihood, get_likelihood
from .posteriors import FAMILIES, Family, get_family
from .vae import VAE

__all__ = ["posteriors", "INITS", "FAMILIES", "Family", "get_family", "LIKELIHOODS", "Likelihood", "get_likelihood", "VAE"]
