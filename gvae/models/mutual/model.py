"""The Mutual Autoencoder (Phuong, Welling, Kushman, Tomioka, Nowozin, "The Mutual Autoencoder: Controlling
Information in Latent Code Representations", 2018; the survey's Algorithm 1): a VAE trained to hold the
mutual information of its generative model, I_p(x, z) under p(z) p_theta(x|z), at a value M the user sets.

The information is estimated by the variational infomax bound (Barber and Agakov)

    I_p(x, z) >= H(z) + E_{z ~ p(z), x ~ p_theta(x|z)} log r_w(z|x),

H(z) = d/2 log(2 pi e) for the prior N(0, I), with r_w(z|x) a network of its own (``mi.*``) giving any gvae
posterior family (a banded precision among them). Each step, on a batch x of the data and as many pairs
(z, x') drawn from the model:

* the VAE's parameters take the ELBO's gradient minus C sign(m - M) times the gradient of the bound's
  expectation, m the batch's estimate; x' is binary, so that gradient is the score-function one,
  E[(log r(z|x') - b) grad log p_theta(x'|z)], with b the mean of the other pairs' log r (a baseline
  that keeps it unbiased; 0 in a batch of one pair);
* r's parameters climb E log r_w(z|x') (the estimate's own gradient).

One loss carries both (:func:`mutual_loss`): its r term depends on r's parameters alone (the pairs are
drawn outside the tape) and its score term on the decoder's alone (log r enters as a constant).
"""
import math

import numpy as np

from ... import kernels, ops
from ...model.layers import MLP
from ...model.likelihoods import bernoulli_draw
from ...model.objectives import elbo_terms
from ...model.vae import VAE

LOG_2PI_E = math.log(2 * math.pi * math.e)


class MutualAutoencoder(VAE):
    """A one-layer VAE of ``n_in`` binary units (Bernoulli decoder) with ``latent`` units, networks of
    widths ``hidden`` and ``activation``, posterior family ``posterior``, and the information bound's
    network r(z|x): x -> the same family's head, parameters ``mi.*`` after the VAE's in the flat buffer."""

    def __init__(self, n_in, latent, hidden, activation="elu", posterior="diagonal", dtype=np.float32,
                 posterior_options=None, init="uniform"):
        super().__init__(n_in, latent, hidden, activation, posterior, "bernoulli", dtype, posterior_options,
                         init=init)
        layer = self.layers[0]
        self.mi_family = layer.family
        self.mi_net = MLP([self.n_in, *self.hidden[0], layer.family.head_size(layer.size)], activation, "mi.")

    def networks(self):
        """The VAE's encoder and decoder, then r's network."""
        return [*super().networks(), self.mi_net]

    def param_shapes(self):
        return {**super().param_shapes(), **self.mi_net.shapes()}

    def new_params(self, rng, x=None):
        """The VAE's parameters drawn as :meth:`VAE.new_params` draws them (the same seed gives the same VAE),
        then r's network."""
        params = super().new_params(rng, x)
        self.mi_net.init(rng, params.views, self.init)
        return params

    def prior_entropy(self):
        """H(z) of the prior N(0, I): d/2 log(2 pi e) nats."""
        return 0.5 * self.sizes[0] * LOG_2PI_E


def generated_terms(model, params, z, u):
    """Pairs drawn from the model and the two log-densities the bound needs: z (B, d) drawn from N(0, I) and
    u (B, n_in) uniform on [0, 1) give x' = [u < sigmoid(logits(z))], a constant of the tape. Returns
    ``(log_r, log_px)``, each (B,): log r(z|x') (differentiable in r's parameters) and
    log p_theta(x'|z) (in the decoder's)."""
    logits = model.decode(params, z)
    x = bernoulli_draw(logits, u)
    log_px = ops.bernoulli_loglik(logits, x)
    q = model.mi_family.split(model.mi_net(params, x), model.sizes[0])
    return ops.mean(model.mi_family.log_prob(q, z[None]), axis=0), log_px


def information(model, log_r):
    """The bound's estimate H(z) + mean log r over the pairs, from log r's values (B,): an array scalar
    (kernels, so that a recorded step holds it)."""
    lr = ops.value_of(log_r)
    mean = kernels.binary("divide", kernels.sum_axes(lr, None, False), lr.shape[0])
    return kernels.binary("add", mean, model.prior_entropy())


def mutual_loss(params, model, x, eps, z, u, kl="analytic", kl_weight=1.0, target=0.0, weight=1.0):
    """The loss minimised by training (see the module's docstring) for the data x (B, n_in) with the
    posterior's noise eps (S, B, d), and B pairs drawn with z (B, d) and u (B, n_in); ``target`` M and
    ``weight`` C in nats. ``aux`` = (ELBO at weight 1, mean rec, mean KL, the information estimate m),
    batch means."""
    rec, kl_term = elbo_terms(model, params, x, eps, kl)
    log_r, log_px = generated_terms(model, params, z, u)
    lr = ops.value_of(log_r)
    n = lr.shape[0]
    # The others' mean, independent of the pair it weighs, and the direction of the information's
    # penalty: kernels, so that a recorded step computes them from each batch. A batch of one pair has no
    # others: its sum less its own log r is 0, and dividing by 1 keeps it so: no baseline, which any
    # constant is as unbiased as (the plain score-function gradient, of a larger variance).
    others = kernels.binary("subtract", kernels.sum_axes(lr, None, False), lr)
    baseline = kernels.binary("divide", others, max(n - 1, 1))
    m = information(model, log_r)
    direction = kernels.binary("multiply", kernels.unary("sign", kernels.binary("subtract", m, target)), weight)
    score = ops.mean(kernels.binary("subtract", lr, baseline) * log_px)
    loss = ops.mean(kl_term * kl_weight - rec) - ops.mean(log_r) + direction * score
    return loss, (ops.mean(rec - kl_term), ops.mean(rec), ops.mean(kl_term), m)
