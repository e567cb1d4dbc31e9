"""The sigmoid belief network deep exponential family (Ranganath, Tang, Charlin, Blei, "Deep exponential
families", 2015; the survey's slide: Bernoulli layers, each layer's natural parameter a linear function of
the one above) with an amortised encoder, trained by the score-function estimators of
:mod:`gvae.models.binary.model` (VIMCO's leave-one-out signals, or NVIL's learned baseline).

Layers z_1 .. z_L of K_l binary units, bottom first:

    p(z_L) = prod_k Bernoulli(sigmoid(a_k))                (a learned),
    p(z_l | z_{l+1}) = prod_k Bernoulli(sigmoid(z_{l+1} W_l + b_l)_k),
    p(x | z_1) = prod_j Bernoulli(sigmoid(z_1 W_0 + b_0)_j),

and the encoder bottom-up, as Mnih and Rezende's SBN experiments infer it: q(z_1|x) = Bernoulli(sigmoid(
enc(x))) with enc a network of the run's widths, q(z_{l+1}|z_l) = Bernoulli(sigmoid(z_l V_l + c_l)). The draws
z = [u < sigmoid(logits)] from uniforms u are constants of the tape; every log-density is differentiable in
its parameters. Parameters: ``enc.*`` (x -> z_1's logits), ``up{l}.*`` (z_l -> z_{l+1}'s logits), ``gen{l}.*``
(z_{l+1} -> z_l's, ``gen0.*`` z_1 -> the pixels'), ``prior.a``, and with NVIL's baseline ``base.*``.
"""
import numpy as np

from ... import ops
from ...model.layers import MLP
from ...model.likelihoods import bernoulli_draw, get_likelihood
from ...model.params import FlatParams, LayeredModel, layered_prior_text, top_down

PRIOR = "prior.a"


class SigmoidBeliefDEF(LayeredModel):
    """Binary layers of ``latent`` units (bottom first) over ``n_in`` binary pixels; the encoder's network
    of widths ``hidden`` and ``activation``; parameters of ``dtype`` initialised by ``init`` (the pixels'
    bias at the data's marginal when the training data are given, the prior's logits at 0); with
    ``baseline``, NVIL's baseline network x -> b(x). A pass's noise is uniform on [0, 1), (K, B,
    sum(latent)), each layer's slice in order."""

    def __init__(self, n_in, latent, hidden, activation="elu", dtype=np.float32, init="uniform", baseline=False):
        super().__init__("the sigmoid belief network", n_in, latent, hidden, activation, dtype, init)
        self.likelihood = get_likelihood("bernoulli", self.n_in)
        self.encoder = MLP([self.n_in, *self.hidden, self.sizes[0]], activation, "enc.")
        self.up = [MLP([k, k_next], activation, f"up{l + 1}.")
                   for l, (k, k_next) in enumerate(zip(self.sizes, self.sizes[1:]))]
        self.gen = [MLP([k, out], activation, f"gen{l}.")
                    for l, (k, out) in enumerate(zip(self.sizes, (self.n_in, *self.sizes[:-1])))]
        self.baseline = MLP([self.n_in, *self.hidden, 1], activation, "base.") if baseline else None

    @property
    def prior_text(self):
        """What a prior draw is, in words (a picture's title)."""
        return layered_prior_text("binary", self.sizes)

    def networks(self):
        return [self.encoder, *self.up, *self.gen] + ([self.baseline] if self.baseline is not None else [])

    def param_shapes(self):
        return {**{n: s for net in self.networks() for n, s in net.shapes().items()}, PRIOR: (self.sizes[-1],)}

    def new_params(self, rng, x=None):
        """Every network as :meth:`MLP.init` draws it by ``init``; with the training data ``x`` and the
        "uniform" scheme, the pixels' bias ``gen0.b0`` at the logits of their marginal; ``prior.a`` at 0."""
        params = FlatParams(self.param_shapes(), self.dtype)
        for net in self.networks():
            net.init(rng, params.views, self.init)
        if x is not None and self.init == "uniform":
            params.views["gen0.b0"][...] = self.likelihood.output_bias(x)
        params.views[PRIOR][...] = 0.0
        return params

    def prior_sample(self, params, u):
        """The codes of every layer (bottom first, each (..., K_l)) drawn top-down with the uniforms u (...,
        sum(latent)): z_L = [u_L < sigmoid(a)], z_l = [u_l < sigmoid(z_{l+1} W_l + b_l)]; what ``gvae sample``
        decodes."""
        return top_down(self.sizes, u, lambda layer, above, ul: bernoulli_draw(
            params[PRIOR] if above is None else self.gen[layer + 1](params, above), ul))

    def likelihood_params(self, params, codes):
        """The pixels' logits for the codes (bottom first): z_1 W_0 + b_0."""
        return self.gen[0](params, codes[0])

    def log_weights(self, params, x, u):
        """:func:`log_weights` of this model."""
        return log_weights(self, params, x, u)


def log_weights(model, params, x, u):
    """The samples' log-weights for x (B, n_in) and uniforms u (K, B, noise_size): ``(rec, log_ratio, log_q)``,
    each (K, B): log p(x|z_1), log p(z) - log q(z|x) over every layer, and log q(z|x), with z drawn bottom-up
    from q (constants of the tape)."""
    zs, log_q, lo = [], 0.0, 0
    for layer, k in enumerate(model.sizes):
        logits = model.encoder(params, x) if layer == 0 else model.up[layer - 1](params, zs[-1])
        z = bernoulli_draw(logits, u[..., lo:lo + k])
        log_q = log_q + ops.bernoulli_loglik(ops.broadcast_to(logits, z.shape), z)
        zs.append(z)
        lo += k
    log_p = ops.bernoulli_loglik(ops.broadcast_to(params[PRIOR], zs[-1].shape), zs[-1])
    for layer in range(len(zs) - 1):
        log_p = log_p + ops.bernoulli_loglik(model.gen[layer + 1](params, zs[layer + 1]), zs[layer])
    rec = model.likelihood.log_prob(model.gen[0](params, zs[0]), x, params)
    return rec, log_p - log_q, log_q
