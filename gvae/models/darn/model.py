"""DARN's deeper variant (Gregor et al., "Deep AutoRegressive Networks", 2014): several layers of
autoregressive binary units, bottom first, each layer conditioned on its neighbour, trained by the
score-function estimators of :mod:`gvae.models.binary.model` (VIMCO, NVIL, DARN's Taylor signals).

Layers z_1 .. z_L (L >= 2) of d_l units; within a layer unit i reads the units j < i (weights P^l, Q^l,
their strictly lower triangles):

    p(z_L)           = prod_i Bernoulli(sigmoid(a_i + sum_{j<i} P^L_ij z_L,j))               (a learned),
    p(z_l | z_l+1)   = prod_i Bernoulli(sigmoid(gen_l(z_l+1)_i + sum_{j<i} P^l_ij z_l,j)),
    p(x | z_1)       = the likelihood of the decoder network's output dec(z_1),
    q(z_1 | x)       = prod_i Bernoulli(sigmoid(enc(x)_i + sum_{j<i} Q^1_ij z_1,j)),
    q(z_l+1 | z_l)   = prod_i Bernoulli(sigmoid(up_l(z_l)_i + sum_{j<i} Q^l+1_ij z_l+1,j)),

enc and dec networks of the run's widths, gen_l and up_l affine maps between neighbouring layers. Each layer
is drawn unit by unit (:func:`gvae.kernels.ar_bernoulli_draw`) and scored in one masked product. With one
layer this is :class:`gvae.models.binary.model.BinaryVAE` with ``autoregressive``. Parameters: ``enc.*``, ``dec.*``,
``up{l}.*`` (z_l -> z_l+1's logits), ``gen{l}.*`` (z_l+1 -> z_l's), ``prior.a``, ``enc.ar{l}`` and
``prior.ar{l}`` (Q^l and P^l, l = 1 .. L, zero at first), the likelihood's, and NVIL's ``base.*``.
"""
import numpy as np

from ... import kernels, ops
from ...model.constants import units_before
from ...model.layers import MLP
from ...model.params import NetworkModel, layered_prior_text, top_down

PRIOR = "prior.a"


def encoder_ar(layer):
    """The name of Q^l, layer ``layer`` (0-based) of the encoder's autoregressive weights."""
    return f"enc.ar{layer + 1}"


def prior_ar(layer):
    """The name of P^l, layer ``layer`` (0-based) of the prior's autoregressive weights."""
    return f"prior.ar{layer + 1}"


class DeepDARN(NetworkModel):
    """Layers of ``latent`` autoregressive binary units (a sequence of two or more sizes, bottom first) over
    ``n_in`` observed units: encoder and decoder networks of widths ``hidden`` and ``activation``, the
    likelihood ``likelihood`` (``likelihood_options``); parameters of ``dtype`` initialised by ``init`` (the
    autoregressive weights and the prior's logits at 0); with ``baseline``, NVIL's network x -> b(x). A
    pass's noise is uniform on [0, 1), (K, B, sum(latent)), each layer's slice in order."""

    def __init__(self, n_in, latent, hidden, activation="elu", likelihood="bernoulli", dtype=np.float32,
                 likelihood_options=None, init="uniform", baseline=False):
        sizes = tuple(int(k) for k in latent)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"DeepDARN stacks two or more layers of positive sizes, got {sizes} (one layer is "
                             "BinaryVAE with autoregressive=True)")
        super().__init__(n_in, sum(sizes), hidden, activation, likelihood, dtype, likelihood_options, init)
        self.sizes = sizes
        self.masks = [units_before(k) for k in sizes]
        self.encoder = MLP([self.n_in, *self.hidden, sizes[0]], activation, "enc.")
        self.decoder = MLP([sizes[0], *self.hidden[::-1], self.likelihood.output_size()], activation, "dec.")
        pairs = list(zip(sizes, sizes[1:]))
        self.up = [MLP([k, above], activation, f"up{l + 1}.") for l, (k, above) in enumerate(pairs)]
        self.gen = [MLP([above, k], activation, f"gen{l + 1}.") for l, (k, above) in enumerate(pairs)]
        self.baseline = MLP([self.n_in, *self.hidden, 1], activation, "base.") if baseline else None
        self.noise_size = sum(sizes)

    @property
    def prior_text(self):
        """What a prior draw is, in words (a picture's title)."""
        return layered_prior_text("autoregressive binary", self.sizes)

    def networks(self):
        return [self.encoder, self.decoder, *self.up, *self.gen] + ([self.baseline] if self.baseline else [])

    def param_shapes(self):
        ar = {}
        for layer, k in enumerate(self.sizes):
            ar[encoder_ar(layer)] = (k, k)
            ar[prior_ar(layer)] = (k, k)
        return {**super().param_shapes(), PRIOR: (self.sizes[-1],), **ar}

    def masked_weights(self):
        """The weights a pass multiplies by a mask of their shape: every layer's autoregressive ones."""
        return tuple(name for layer in range(len(self.sizes)) for name in (encoder_ar(layer), prior_ar(layer)))

    def ar_logits(self, params, name, layer, bias, z):
        """bias + z (W o mask)^T for the weights ``name`` of layer ``layer`` at its codes z (..., d_l): one
        masked product (z a constant of the tape, or a variable for DARN's Taylor signals)."""
        d = self.sizes[layer]
        weights = ops.multiply(params[name], self.masks[layer].like(params[name]))
        return bias + ops.reshape(ops.matmul(ops.reshape(z, (-1, d)), ops.transpose(weights)), z.shape)

    def draw(self, params, x, u):
        """(codes, encoder logits, the encoder's output): per layer the codes (K, B, d_l) drawn bottom-up from
        q with the uniforms u (K, B, sum(latent)), unit by unit, and the logits that score them; enc(x)."""
        codes, logits, lo = [], [], 0
        top = self.encoder(params, x)
        for layer, k in enumerate(self.sizes):
            ul = u[..., lo:lo + k]
            bias = ops.broadcast_to(top, ul.shape) if layer == 0 else self.up[layer - 1](params, codes[-1])
            z = kernels.ar_bernoulli_draw(kernels.contiguous(ops.value_of(bias)),
                                          ops.value_of(params[encoder_ar(layer)]), kernels.contiguous(ul))
            logits.append(self.ar_logits(params, encoder_ar(layer), layer, bias, z))
            codes.append(z)
            lo += k
        return codes, logits, top

    def prior_logits(self, params, codes):
        """The generative model's logits of each layer at the codes (one array per layer, bottom first)."""
        out = []
        for layer, z in enumerate(codes):
            if layer == len(codes) - 1:
                bias = ops.broadcast_to(params[PRIOR], z.shape)
            else:
                bias = self.gen[layer](params, codes[layer + 1])
            out.append(self.ar_logits(params, prior_ar(layer), layer, bias, z))
        return out

    def prior_sample(self, params, u):
        """The codes of every layer (bottom first, each (..., d_l)) drawn top-down from the generative model
        with the uniforms u (..., sum(latent)), each layer unit by unit: what ``gvae sample`` decodes."""
        def draw(layer, above, ul):
            ul = kernels.contiguous(ul)
            bias = (kernels.broadcast_to(ops.value_of(params[PRIOR]), ul.shape) if above is None
                    else ops.value_of(self.gen[layer](params, above)))
            return kernels.ar_bernoulli_draw(kernels.contiguous(bias), ops.value_of(params[prior_ar(layer)]), ul)
        return top_down(self.sizes, u, draw)

    def _scored(self, params, x, u):
        """(codes, encoder logits, enc(x), log p(z), log p(x|z_1)) at codes drawn from q with the uniforms u: what
        :meth:`log_weights` and :meth:`taylor_terms` share."""
        codes, q_logits, top = self.draw(params, x, u)
        log_p = _sum([ops.bernoulli_loglik(c, z) for c, z in zip(self.prior_logits(params, codes), codes)])
        rec = self.likelihood.log_prob(self.decoder(params, codes[0]), x, params)
        return codes, q_logits, top, log_p, rec

    def log_weights(self, params, x, u):
        """``(rec, log_ratio, log_q)``, each (K, B): log p(x|z_1), log p(z) - log q(z|x) over every layer and
        log q(z|x), with z drawn from q (constants of the tape)."""
        codes, q_logits, _, log_p, rec = self._scored(params, x, u)
        log_q = _sum([ops.bernoulli_loglik(a, z) for a, z in zip(q_logits, codes)])
        return rec, log_p - log_q, log_q

    def taylor_terms(self, params, x, u):
        """What :func:`gvae.models.binary.model.taylor_loss` reads: (codes per layer, log q per unit per layer, log
        p(z), log p(x|z_1), log_w_at); ``log_w_at(plain, codes)`` is the sum of log w at continuous codes of
        every layer, through the upward and downward maps and the autoregressive weights (enc(x) a constant)."""
        codes, q_logits, top, log_prior, rec = self._scored(params, x, u)
        per_unit = [z * a - ops.softplus(a) for a, z in zip(q_logits, codes)]
        fixed = ops.value_of(top)

        def log_w_at(plain, zs):
            total = ops.sum(self.likelihood.log_prob(self.decoder(plain, zs[0]), x, plain))
            for layer, (z, p) in enumerate(zip(zs, self.prior_logits(plain, zs))):
                bias = fixed if layer == 0 else self.up[layer - 1](plain, zs[layer - 1])
                q = self.ar_logits(plain, encoder_ar(layer), layer, bias, z)
                total = total + ops.sum(z * (p - q) - ops.softplus(p) + ops.softplus(q))
            return total
        return codes, per_unit, log_prior, rec, log_w_at


def _sum(terms):
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total
