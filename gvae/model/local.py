"""Local variational parameters: a VAE's generative model with q(z|x_b) given by free head values h_b.

The encoder maps x_b to the head h_b = encoder(x_b) (B, head_size(d)) and the family turns it into
q(z|x_b) = split(h_b). :class:`LocalVAE` keeps the priors, decoder and likelihood of a VAE and replaces
its posterior pass by a table of head values under the parameter name :data:`HEADS`, so the objectives
of :mod:`gvae.model.objectives` (ELBO, importance weights) are functions of the heads with the generative
model fixed: the E-step of variational EM, seeded by the encoder's heads (Cremer, Li & Duvenaud,
"Inference Suboptimality in Variational Autoencoders", refine these local parameters to measure the
amortisation gap).

In a hierarchy every layer has its own heads (one row per point: the layers' heads side by side, bottom
first), and the local q is their product, q(z_1, ..., z_L | x_b) = prod_l q_l(z_l; h_bl): the layers are
independent given x_b, where the amortised q conditions each layer on a sample of its neighbour. Its seed,
:func:`encoder_heads`, is the amortised heads of the mean pass.
"""
from ..kernels import array_module

HEADS = "local.h"


def encoder_heads(model, params, x):
    """The encoder's head values (B, total head size) for x (B, n): each layer's head in the mean pass
    (:meth:`VAE.mean_heads`), side by side, bottom first (one layer: the amortised q's parameters)."""
    heads = model.mean_heads(params, x)
    if len(heads) == 1:
        return heads[0]
    return array_module(heads[0]).concatenate(heads, axis=-1)


class LocalVAE:
    """The VAE ``model`` with each layer's q_l(z_l | x_b) = family_l.split(row b of its heads), the heads
    ``params[HEADS]`` (B, total head size) whose rows are x's rows. Everything else the objectives use
    (:class:`gvae.model.interface.ObjectiveModel`: ``likelihood_params``, the priors, ``likelihood``,
    ``layers``, ...) is the model's."""

    def __init__(self, model):
        self.model = model
        self.head_sizes = [layer.family.head_size(layer.size) for layer in model.layers]
        # The layers' q are independent of the samples above them, so the objectives take the KL route
        # of a q that does not share its prior's condition (the entropy and the prior's log-density at the
        # sample), whatever order the model's own encoder infers in.
        self.inference = "bottom-up"

    def __getattr__(self, name):
        # Everything but the posterior pass is the model's own (layers, likelihood, decode, ...,
        # the rest of gvae.model.interface.ObjectiveModel): read from it, never copied. (Only names this
        # object lacks arrive here; "model" itself, before __init__ set it, is an AttributeError.)
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    def qs(self, params, x):
        """Each layer's q from the heads, bottom first; refuses heads that do not fit x's rows."""
        h, total = params[HEADS], sum(self.head_sizes)
        if h.shape[0] != x.shape[0] or h.shape[-1] != total:
            names = "+".join(layer.family.name for layer in self.layers)
            raise ValueError(f"local heads of shape {tuple(h.shape)} do not fit {x.shape[0]} data points of a "
                             f"{names} posterior (expected ({x.shape[0]}, {total}))")
        out, start = [], 0
        for layer, size in zip(self.layers, self.head_sizes):
            out.append(layer.family.split(h[..., start:start + size], layer.size))
            start += size
        return out

    def infer(self, params, x, eps=None):
        """The posterior pass of the objectives (:meth:`VAE.infer`) with q from the heads: ``(qs, zs)``."""
        qs = self.qs(params, x)
        noise = self.split_noise(eps) if eps is not None else [None] * len(qs)
        return qs, [q.mu if e is None else layer.family.sample(q, e) for layer, q, e in zip(self.layers, qs, noise)]

    def log_q(self, params, x, zs):
        """log q(z_1, ..., z_L | x) of given samples zs (bottom first): the layers' log-densities summed."""
        total = None
        for layer, q, z in zip(self.layers, self.qs(params, x), zs):
            term = layer.family.log_prob(q, z)
            total = term if total is None else total + term
        return total

    def encode(self, params, x):
        """The bottom layer's q from the heads."""
        return self.qs(params, x)[0]


def with_heads(params, h):
    """The parameter dict ``params`` (the decoder's and the likelihood's are read) with the heads h."""
    return {**params, HEADS: h}
