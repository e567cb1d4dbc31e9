"""What the objectives need of a model: the :class:`ObjectiveModel` protocol.

The objectives (:mod:`gvae.model.objectives`) are written against this interface, not against
:class:`gvae.model.VAE`: the VAE provides it, and so does :class:`gvae.model.local.LocalVAE` (the same
decoder with free per-point posteriors), which is how the inference gaps reuse the objectives unchanged."""
from typing import Protocol, Sequence, runtime_checkable


@runtime_checkable
class ObjectiveModel(Protocol):
    """A model the objectives can score.

    ``layers``: the stochastic layers, bottom first, each with ``.family`` (its posterior family) and
    ``.size``; ``likelihood``: the observation model p(x|z_1); ``noise_size``: the width of the standard
    normal noise eps (S, B, noise_size) of a pass, the sum of the layers' sizes; ``inference``:
    "bottom-up" or "top-down"; ``conditional``: the family of the conditional priors p(z_l | z_{l+1})."""

    layers: Sequence
    likelihood: object
    noise_size: int
    inference: str
    conditional: object

    def infer(self, params, x, eps=None):
        """The posterior pass ``(qs, zs)``, bottom first: each layer's posterior parameters and sample
        (S, B, d_l) for eps (S, B, noise_size), or its mean (B, d_l) when eps is None."""

    def priors(self, params, zs):
        """p(z_l | z_{l+1}) of each layer below the top as a ``DiagonalParams``, then None (N(0, I))."""

    def likelihood_params(self, params, zs):
        """The likelihood's parameters (the decoder output) for a pass's samples zs, bottom first (a VAE
        reads z_1 alone; a ladder of decoders, as the variational ladder autoencoder's, reads them all)."""
