"""The sparse gamma deep exponential family (Ranganath, Tang, Charlin, Blei, "Deep exponential families",
2015; the survey's slide) with an amortised encoder, trained by implicit reparameterisation gradients
(Figurnov, Mohamed, Mnih 2018) through :func:`gvae.ops.gamma_sample`.

Layers z_1 .. z_L of K_l non-negative units, bottom first, each controlling the next one's mean:

    z_L,k ~ Gamma(alpha, rate beta)                       (alpha = 0.1, beta = 0.3: sparse, the paper's),
    z_l,k | z_{l+1} ~ Gamma(alpha, rate alpha / m_l,k),   m_l = z_{l+1} W_l   (so E[z_l,k] = m_l,k),
    x_j | z_1 ~ Bernoulli(1 - exp(-r_j)),                 r = z_1 W_0 + RATE_FLOOR,

the last the Bernoulli-Poisson link (x_j = [n_j > 0], n_j ~ Poisson(r_j); :func:`gvae.ops.bernoulli_poisson_loglik`)
that models binarised images with the paper's Poisson layer. The weights W_l >= 0 are point estimates,
softplus(raw) (``weights="point"``), or, as the paper has them, random too (``weights="gamma"``): the prior
W ~ Gamma(alpha, rate beta) per weight and a mean-field posterior q(W) = Gamma(a_W, rate b_W) learned with the
encoder by the bound per image

    E_q(W) [ELBO(x; W)] - KL(q(W) || p(W)) / N        (N the training set's size),

one draw W = P^-1(a_W, u) / b_W a step shared by the batch (implicit reparameterisation), the KL estimated at
that draw by log q(W) - log p(W) (unbiased; :func:`weight_kl` is its closed form, for the summary). The
posterior is amortised and
mean-field given x: q(z_l,k | x) = Gamma(a, rate b), (a, b) = softplus(enc(x)) + floors, one network for all
layers. A draw is z = P^-1(a, u) / b for uniforms u (clipped into [U_FLOOR, 1 - U_FLOOR]), and the ELBO
E_q[log p(x, z) - log q(z|x)] is estimated by Monte Carlo, every density in closed form.

Numerics: q's shapes are floored at SHAPE_FLOOR = 0.2, above the prior's 0.1, so that a draw at the
smallest uniform stays a normal float32 (a shape of 0.05 would underflow to 0); the means m_l and the
rates r are floored by RATE_FLOOR. Parameters: ``enc.*``, then ``gen.W0`` (K_1, n_in), ``gen.W1`` (K_2, K_1), ...,
or with gamma weights ``vb.gen.m0``, ``vb.gen.a0``, ... of the same shapes: q(W)'s mean softplus(m) + MEAN_FLOOR
(on the point weights' scale, so that Adam moves it as it moves them) and its shape SHAPE_FLOOR + exp(a) (in
log space, so that it can travel orders of magnitude), starting at WEIGHT_SHAPE0; b_W = a_W / mean.
"""
import math

import numpy as np

from ... import ops
from ...kernels import array_module, to_host
from ...model.layers import MLP
from ...model.likelihoods import get_likelihood
from ...model.params import FlatParams, LayeredModel, layered_prior_text, top_down

PRIOR_SHAPE, PRIOR_RATE = 0.1, 0.3
SHAPE_FLOOR, SCALE_FLOOR = 0.2, 1e-3  # q's shape and rate floors
RATE_FLOOR = 1e-6                     # floor of the means m_l and the pixels' Poisson rates
U_FLOOR = 2.0 ** -24                  # the uniforms' clip: a float32 draw of 0 or 1 is moved inside (0, 1)
WEIGHTS = ("point", "gamma")
WEIGHT_SHAPE0 = 100.0                 # q(W)'s initial shape: a coefficient of variation of 0.1
MEAN_FLOOR = 1e-8                     # q(W)'s mean floor: its rate a_W / mean stays finite


def weight_name(layer):
    return f"gen.W{layer}"


def weight_posterior_names(layer):
    """The raw mean's and shape's names of layer ``layer``'s gamma weights."""
    return f"vb.gen.m{layer}", f"vb.gen.a{layer}"


def _softplus_inverse(v):
    return v + np.log(-np.expm1(-v))


class GammaDEF(LayeredModel):
    """The sparse gamma DEF over ``n_in`` binary units with layers of ``latent`` units (bottom first), an
    encoder of widths ``hidden`` and ``activation``, parameters of ``dtype`` initialised by ``init``. A pass's
    noise is uniforms (S, B, sum(latent)), each layer's slice in order."""

    def __init__(self, n_in, latent, hidden, activation="elu", dtype=np.float32, init="uniform", weights="point"):
        super().__init__("the gamma DEF", n_in, latent, hidden, activation, dtype, init)
        if weights not in WEIGHTS:
            raise ValueError(f"the gamma DEF's weights are one of {WEIGHTS}, got {weights!r}")
        self.likelihood = get_likelihood("bernoulli", self.n_in)  # the data's binarisation and checks
        self.encoder = MLP([self.n_in, *self.hidden, 2 * sum(self.sizes)], activation, "enc.")
        self.fan_outs = (self.n_in, *self.sizes[:-1])
        self.weight_kind = weights
        self.weight_shapes = [(k, out) for k, out in zip(self.sizes, self.fan_outs)]
        self.weight_noise_size = sum(k * out for k, out in self.weight_shapes)  # the uniforms of one draw of W

    def networks(self):
        return [self.encoder]

    def param_shapes(self):
        if self.weight_kind == "point":
            weights = {weight_name(l): shape for l, shape in enumerate(self.weight_shapes)}
        else:
            weights = {name: shape for l, shape in enumerate(self.weight_shapes) for name in weight_posterior_names(l)}
        return {**self.encoder.shapes(), **weights}

    def new_params(self, rng, x=None):
        """The encoder as :class:`MLP` initialises it; the weights at softplus^-1 of positive values that put
        each layer's mean at the prior's (alpha / beta) when the layer above is at it, and the pixels' rates
        at the data's marginal (-log(1 - mean x), clipped into [1e-3, 1 - 1e-3]) when ``x`` is given (0.1
        otherwise), each times a uniform draw in [0.5, 1.5]."""
        params = FlatParams(self.param_shapes(), self.dtype)
        self.encoder.init(rng, params.views, self.init)
        mean = PRIOR_SHAPE / PRIOR_RATE
        for layer, (k, out) in enumerate(zip(self.sizes, self.fan_outs)):
            if layer == 0:
                p = np.full(out, 1 - math.exp(-0.1)) if x is None else np.clip(np.asarray(x, np.float64).mean(0),
                                                                                 1e-3, 1 - 1e-3)
                target = -np.log1p(-p) / (k * mean)
            else:
                target = np.full(out, 1.0 / k)
            value = target[None, :] * rng.uniform(0.5, 1.5, (k, out))
            if self.weight_kind == "point":
                params.views[weight_name(layer)][...] = _softplus_inverse(value)
            else:  # q(W)'s mean at that value, its shape WEIGHT_SHAPE0
                m_name, a_name = weight_posterior_names(layer)
                params.views[m_name][...] = _softplus_inverse(value)
                params.views[a_name][...] = math.log(WEIGHT_SHAPE0 - SHAPE_FLOOR)
        return params

    def posterior(self, params, x):
        """[(a, b)] per layer, bottom first, each (B, K_l): q(z_l|x) = Gamma(a, rate b)."""
        h = self.encoder(params, x)
        out, lo = [], 0
        for k in self.sizes:
            a = ops.softplus(ops.getitem(h, (slice(None), slice(lo, lo + k)))) + self.dtype.type(SHAPE_FLOOR)
            b = ops.softplus(ops.getitem(h, (slice(None), slice(lo + k, lo + 2 * k)))) + self.dtype.type(SCALE_FLOOR)
            out.append((a, b))
            lo += 2 * k
        return out

    def weights(self, params):
        """W_l >= 0, bottom first: softplus(raw), or with gamma weights their posterior mean a_W / b_W (what
        validation and the test score)."""
        if self.weight_kind == "point":
            return [ops.softplus(params[weight_name(layer)]) for layer in range(len(self.sizes))]
        names = map(weight_posterior_names, range(len(self.sizes)))
        return [ops.softplus(params[m]) + self.dtype.type(MEAN_FLOOR) for m, _ in names]

    def weight_posterior(self, params):
        """[(a_W, b_W)] per layer, bottom first: q(W_l) = Gamma(a_W, rate b_W), each (K_l, fan_out), from the
        mean and the shape (b_W = a_W / mean)."""
        shapes = [ops.exp(params[a]) + self.dtype.type(SHAPE_FLOOR)
                  for _, a in map(weight_posterior_names, range(len(self.sizes)))]
        return [(shape, shape / mean) for shape, mean in zip(shapes, self.weights(params))]

    def sampled_weights(self, params, u_w):
        """(one draw of every W_l from q(W), bottom first; log q(W) - log p(W) at it, a scalar) from the
        uniforms u_w (weight_noise_size,): the draw differentiable in a_W and b_W by implicit
        reparameterisation, the difference the KL's unbiased estimate."""
        dt = self.dtype.type
        draws, kl, lo = [], 0.0, 0
        for (a, b), (k, out) in zip(self.weight_posterior(params), self.weight_shapes):
            w = ops.gamma_sample(a, b, u_w[lo:lo + k * out].reshape(k, out))
            kl = kl + ops.sum(ops.gamma_log_prob(w, a, b) - ops.gamma_log_prob(w, dt(PRIOR_SHAPE), dt(PRIOR_RATE)))
            draws.append(w)
            lo += k * out
        return draws, kl

    def prior_sample(self, params, u):
        """The codes of every layer (bottom first, each (..., K_l)) drawn top down with the uniforms u (...,
        sum(latent)) in (0, 1): z_L ~ Gamma(alpha, rate beta), z_l ~ Gamma(alpha, rate alpha / m_l), m_l =
        z_{l+1} W_l + RATE_FLOOR at :meth:`weights` (gamma weights: their posterior mean, as validation scores
        them); what ``gvae sample`` decodes."""
        dt, weights = self.dtype.type, self.weights(params)

        def draw(layer, above, ul):
            rate = dt(PRIOR_RATE) if above is None else dt(PRIOR_SHAPE) / self.mean_of(above, weights[layer + 1])
            return ops.value_of(ops.gamma_sample(dt(PRIOR_SHAPE), rate, ul))
        return top_down(self.sizes, u, draw)

    def likelihood_params(self, params, codes):
        """The pixels' logits under the Bernoulli-Poisson link, p(x_j = 1) = 1 - exp(-r_j) with r = z_1 W_0 +
        RATE_FLOOR: logit = log(e^r - 1) = r + log(1 - e^-r), so that the Bernoulli likelihood's mean and draws
        (:attr:`likelihood`) are the link's."""
        r = self.mean_of(codes[0], self.weights(params)[0])
        return r + ops.log1p(-ops.exp(-r))

    @property
    def prior_text(self):
        """What a prior draw is, in words (a picture's title)."""
        return layered_prior_text("gamma", self.sizes)

    def mean_of(self, z, w):
        """z (..., K) times W (K, n) -> (..., n), plus RATE_FLOOR."""
        return self.affine(z, w, self.dtype.type(RATE_FLOOR))


def draw(model, params, x, u):
    """q(z|x)'s parameters [(a, b)] and draws [z_l] (S, B, K_l), bottom first, for x (B, n_in) and uniforms u
    (S, B, noise_size): z = P^-1(a, u) / b, differentiable in the encoder by implicit reparameterisation."""
    qs, zs, lo = model.posterior(params, x), [], 0
    for (a, b), k in zip(qs, model.sizes):
        zs.append(ops.gamma_sample(a, b, u[..., lo:lo + k]))
        lo += k
    return qs, zs


def joint_terms(model, params, x, qs, zs, weights=None):
    """``(rec, log_ratio, log_q)``, each (S, B), at the draws zs: log p(x|z_1), log p(z) - log q(z|x) over every
    layer, and log q(z|x); at the given ``weights`` (a list, bottom first), else at ``model.weights(params)``."""
    dt = model.dtype.type
    log_q = 0.0
    for (a, b), z in zip(qs, zs):
        log_q = log_q + ops.sum(ops.gamma_log_prob(z, a, b), axis=-1)
    weights = model.weights(params) if weights is None else weights
    log_p = ops.sum(ops.gamma_log_prob(zs[-1], dt(PRIOR_SHAPE), dt(PRIOR_RATE)), axis=-1)
    for layer in range(len(zs) - 1):
        m = model.mean_of(zs[layer + 1], weights[layer + 1])
        log_p = log_p + ops.sum(ops.gamma_log_prob(zs[layer], dt(PRIOR_SHAPE), dt(PRIOR_SHAPE) / m), axis=-1)
    rec = ops.bernoulli_poisson_loglik(model.mean_of(zs[0], weights[0]), x)
    return rec, log_p - log_q, log_q


def log_weights(model, params, x, u):
    """The samples' log-weights for x (B, n_in) and uniforms u (S, B, noise_size): ``(rec, log_ratio)``, each
    (S, B): log p(x|z_1) and log p(z) - log q(z|x) over every layer, z drawn from q(z|x) by implicit
    reparameterisation (differentiable in the encoder through the draws)."""
    return joint_terms(model, params, x, *draw(model, params, x, u))[:2]


def score_function_loss(params, model, x, u):
    """The ELBO's score-function estimator, the reference the implicit gradient's variance is measured
    against (examples/estimator_variance.py): the draws held constant, -mean [log w + log w~ log q(z|x)]
    with log w~ the log-weight's value, whose gradient in the encoder is -mean (log w - 1) grad log q and in
    the weights -mean grad log p(x, z); unbiased (tests/test_gamma_def.py). ``aux`` as :func:`gamma_def_loss`'s."""
    qs, zs = draw(model, params, x, u)
    rec, log_ratio, log_q = joint_terms(model, params, x, qs, [ops.value_of(z) for z in zs])
    log_w = rec + log_ratio
    return -ops.mean(log_w + ops.value_of(log_w) * log_q), (ops.mean(log_w), ops.mean(rec), -ops.mean(log_ratio))


def gamma_def_loss(params, model, x, u, kl_weight=1.0, u_w=None, data_size=1):
    """The loss minimised by training, -mean [rec + kl_weight log_ratio] over the S samples and the batch
    (the ELBO at weight 1; warm-up or beta below or above it), and ``aux`` = (mean ELBO, mean rec, mean
    -log_ratio), batch means. With gamma weights, ``u_w`` (weight_noise_size,) draws them
    (:meth:`GammaDEF.sampled_weights`) and the loss adds their KL estimate over ``data_size``, which the bound
    in ``aux`` includes and ``aux``'s fourth number is."""
    if u_w is None:
        rec, log_ratio = log_weights(model, params, x, u)
        return -ops.mean(rec + log_ratio * kl_weight), (ops.mean(rec + log_ratio), ops.mean(rec), -ops.mean(log_ratio))
    weights, kl = model.sampled_weights(params, u_w)
    rec, log_ratio = joint_terms(model, params, x, *draw(model, params, x, u), weights=weights)[:2]
    per_image = kl / model.dtype.type(data_size)
    return (-ops.mean(rec + log_ratio * kl_weight) + per_image,
            (ops.mean(rec + log_ratio) - per_image, ops.mean(rec), -ops.mean(log_ratio), per_image))


def weight_kl(model, params):
    """KL(q(W) || p(W)) of gamma weights in closed form, nats (a host float, float64):
    sum (a - a0) psi(a) - lgamma(a) + lgamma(a0) + a0 (log b - log b0) + a (b0 - b) / b."""
    from scipy.special import digamma, gammaln
    total = 0.0
    host = {k: np.asarray(to_host(ops.value_of(v)), np.float64) for k, v in params.items()}
    for a, b in model.weight_posterior(host):
        total += float(np.sum((a - PRIOR_SHAPE) * digamma(a) - gammaln(a) + gammaln(PRIOR_SHAPE)
                              + PRIOR_SHAPE * (np.log(b) - np.log(PRIOR_RATE)) + a * (PRIOR_RATE - b) / b))
    return total


def open_uniform(rng, shape, dtype):
    """Uniforms on [U_FLOOR, 1 - U_FLOOR] from the device generator ``rng``: the noise of a gamma DEF's pass."""
    u = rng.random(shape, dtype=dtype)
    return array_module(u).clip(u, U_FLOOR, 1.0 - U_FLOOR)
