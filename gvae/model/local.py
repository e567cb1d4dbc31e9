"""Local variational parameters: a VAE's decoder with q(z|x_b) given by free head values h_b.

The encoder maps x_b to the head h_b = encoder(x_b) (B, head_size(d)) and the family turns it into
q(z|x_b) = split(h_b). :class:`LocalVAE` keeps the family, decoder and likelihood of a VAE and replaces
the encoder by a table of head values under the parameter name :data:`HEADS`, so the objectives of
:mod:`gvae.model.objectives` (ELBO, importance weights) are functions of the heads with the decoder
fixed: the E-step of variational EM, seeded by the encoder's heads (Cremer, Li & Duvenaud, "Inference
Suboptimality in Variational Autoencoders", refine these local parameters to measure the amortisation gap).

One stochastic layer: the heads of layer 0.
"""
HEADS = "local.h"


def encoder_heads(model, params, x):
    """The encoder's head values h (B, head_size(d)) for x (B, n): the amortised q's parameters."""
    return model.layers[0].encoder(params, x)


class LocalVAE:
    """The VAE ``model`` with ``encode(params, x) = family.split(params[HEADS])``: row b of the heads is
    q(z|x_b), so x and the heads must have the same rows. Everything else the objectives use
    (:class:`gvae.model.interface.ObjectiveModel`: ``likelihood_params``, the priors, ``likelihood``, ``layers``, ...)
    is the model's. One stochastic layer."""

    def __init__(self, model):
        if len(model.layers) != 1:
            raise ValueError(f"local variational parameters are refined for one stochastic layer; this model "
                             f"has {len(model.layers)} (latent sizes {list(model.sizes)})")
        self.model = model

    def __getattr__(self, name):
        # Everything but the posterior pass is the model's own (layers, likelihood, decode, ...,
        # the rest of gvae.model.interface.ObjectiveModel): read from it, never copied. (Only names this
        # object lacks arrive here; "model" itself, before __init__ set it, is an AttributeError.)
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    def infer(self, params, x, eps=None):
        """The posterior pass of the objectives (:meth:`VAE.infer`) with q from the heads: ``([q], [z])``."""
        q = self.encode(params, x)
        return [q], [q.mu if eps is None else self.layers[0].family.sample(q, eps)]

    def encode(self, params, x):
        h, layer = params[HEADS], self.layers[0]
        if h.shape[0] != x.shape[0] or h.shape[-1] != layer.family.head_size(layer.size):
            raise ValueError(f"local heads of shape {tuple(h.shape)} do not fit {x.shape[0]} data points of a "
                             f"{layer.family.name} posterior (expected ({x.shape[0]}, "
                             f"{layer.family.head_size(layer.size)}))")
        return layer.family.split(h, layer.size)


def with_heads(params, h):
    """The parameter dict ``params`` (the decoder's and the likelihood's are read) with the heads h."""
    return {**params, HEADS: h}
