"""The Poisson deep exponential family (Ranganath, Tang, Charlin, Blei, "Deep exponential families", 2015; the
survey's slide: count layers, each the Poisson rate of the one below) with an amortised encoder, on count
data: MNIST's 8-bit pixel intensities k = min(floor(256 x), 255) taken as counts (:class:`PixelCounts`), the
same every epoch. Trained by the score-function estimators of :mod:`gvae.models.binary.model` (VIMCO or NVIL), which
call :meth:`PoissonDEF.log_weights`.

Layers z_1 .. z_L of K_l count units, bottom first:

    z_L,k ~ Poisson(softplus(a_k))                          (a learned),
    z_l,k | z_{l+1} ~ Poisson(z_{l+1} W_l + RATE_FLOOR)       (W_l = softplus(raw) >= 0),
    x_j | z_1 ~ Poisson(z_1 W_0 + c_j)                        (c = softplus(raw) > 0, a pixel's base rate),

and q(z_l,k | x) = Poisson(r_l,k(x)), r = softplus(enc(x / 256)) + RATE_FLOOR clipped at RATE_MAX, one
network for every layer (mean-field given x). A draw is the Poisson inverse CDF at a uniform u, truncated at
MOST_COUNT (P(z > MOST_COUNT) < 1e-13 at RATE_MAX), taken by accumulating the pmf in float64 (a kernel of
:mod:`gvae.kernels.gamma`); the draws are constants of the tape, log q differentiable in the encoder.
Parameters: ``enc.*``, ``gen.W0`` (K_1, n_in), ``gen.c`` (n_in,), ``gen.W1`` (K_2, K_1), ..., ``prior.a``,
and with NVIL's baseline ``base.*``.
"""
import numpy as np

from ... import ops
from ...model.layers import MLP
from ...model.params import FlatParams, LayeredModel, layered_prior_text, top_down

PRIOR, BASE_RATE = "prior.a", "gen.c"
RATE_FLOOR, RATE_MAX, MOST_COUNT = 1e-4, 30.0, 80
LEVELS = 256  # MNIST's intensities are k / 256


def weight_name(layer):
    return f"gen.W{layer}"


class PixelCounts:
    """The observations of a Poisson DEF: each pixel's 8-bit intensity as a count, k = min(floor(256 x), 255)
    for x = k / 256 in [0, 1] (MNIST's pickle; k / 255 gives the same k). Counts are modelled as they are, so
    log p(x) is in nats of the counts (no offset)."""

    continuous = False  # counts, not dequantised intensities: no bits per dimension
    name = "poisson"  # the observation model, as a picture's title names it

    def __init__(self, n):
        self.n = int(n)

    @staticmethod
    def counts(x):
        """Raw images x (N, n) in [0, 1] -> counts (N, n) float64 on the host; ValueError outside [0, 1]."""
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating) or x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError("the Poisson DEF reads 8-bit intensities as counts: the images must be floats in [0, 1]")
        return np.minimum(np.floor(x.astype(np.float64) * LEVELS), LEVELS - 1)

    def nats_offset(self):
        return 0.0

    def mean(self, out, params):
        """The pixels' mean counts ``out`` (their Poisson rates, (..., n)) as intensities, rate / 256 (a picture
        clips them into [0, 1])."""
        return ops.multiply(out, out.dtype.type(1.0 / LEVELS))

    def sample(self, out, params, rng):
        """Counts drawn at the rates ``out`` (..., n) from ``rng``'s uniforms, by the inverse CDF truncated at
        255 (an 8-bit intensity), as intensities k / 256."""
        counts = ops.poisson_draw(out, rng.random(out.shape, dtype=out.dtype), LEVELS - 1)
        return ops.multiply(counts, out.dtype.type(1.0 / LEVELS))


def poisson_draw(rate, u):
    """Counts k ~ Poisson(rate) by the inverse CDF at uniforms u (broadcasting), truncated at MOST_COUNT
    (:func:`gvae.ops.poisson_draw`); rate's dtype. Not differentiable (a draw)."""
    return ops.poisson_draw(rate, u, MOST_COUNT)


class PoissonDEF(LayeredModel):
    """Count layers of ``latent`` units (bottom first) over ``n_in`` count observations; the encoder's
    network of widths ``hidden`` and ``activation``; parameters of ``dtype`` initialised by ``init``; with
    ``baseline``, NVIL's baseline network. A pass's noise is uniform on [0, 1), (K, B, sum(latent))."""

    def __init__(self, n_in, latent, hidden, activation="elu", dtype=np.float32, init="uniform", baseline=False):
        super().__init__("the Poisson DEF", n_in, latent, hidden, activation, dtype, init)
        self.likelihood = PixelCounts(self.n_in)
        self.encoder = MLP([self.n_in, *self.hidden, sum(self.sizes)], activation, "enc.")
        self.baseline = MLP([self.n_in, *self.hidden, 1], activation, "base.") if baseline else None
        self.fan_outs = (self.n_in, *self.sizes[:-1])

    def networks(self):
        return [self.encoder] + ([self.baseline] if self.baseline is not None else [])

    def param_shapes(self):
        weights = {weight_name(l): (k, out) for l, (k, out) in enumerate(zip(self.sizes, self.fan_outs))}
        return {**{n: s for net in self.networks() for n, s in net.shapes().items()}, **weights,
                BASE_RATE: (self.n_in,), PRIOR: (self.sizes[-1],)}

    def new_params(self, rng, x=None):
        """The networks as :meth:`MLP.init` draws them; the prior's rates at 1; each layer's weights at
        softplus^-1 of values that keep the layer below at rate 1 when this one is (1 / K times a uniform draw
        in [0.5, 1.5]); the pixels' base rates at a tenth of the training counts' mean (``x``, (N, n_in); 1
        without), their weights at the rest of the mean over K_1 units of rate 1."""
        params = FlatParams(self.param_shapes(), self.dtype)
        for net in self.networks():
            net.init(rng, params.views, self.init)
        mean = np.full(self.n_in, 1.0) if x is None else np.maximum(np.asarray(x, np.float64).mean(0), 1e-2)
        for layer, (k, out) in enumerate(zip(self.sizes, self.fan_outs)):
            target = (0.9 * mean if layer == 0 else np.ones(out)) / k
            params.views[weight_name(layer)][...] = _softplus_inverse(target[None, :] * rng.uniform(0.5, 1.5, (k, out)))
        params.views[BASE_RATE][...] = _softplus_inverse(0.1 * mean)
        params.views[PRIOR][...] = _softplus_inverse(np.ones(self.sizes[-1]))
        return params

    def rates(self, params, x):
        """q(z_l|x)'s Poisson rates per layer, bottom first, each (B, K_l): softplus(enc(x / 256)) + RATE_FLOOR,
        at most RATE_MAX."""
        dt = self.dtype.type
        h = ops.softplus(self.encoder(params, ops.multiply(x, dt(1.0 / LEVELS)))) + dt(RATE_FLOOR)
        h = h - ops.softplus(h - dt(RATE_MAX))  # a smooth cap: below RATE_MAX for any input
        out, lo = [], 0
        for k in self.sizes:
            out.append(ops.getitem(h, (slice(None), slice(lo, lo + k))))
            lo += k
        return out

    def weights(self, params):
        """W_l = softplus(raw) >= 0, bottom first."""
        return [ops.softplus(params[weight_name(layer)]) for layer in range(len(self.sizes))]

    def prior_sample(self, params, u):
        """The counts of every layer (bottom first, each (..., K_l)) drawn top down with the uniforms u (...,
        sum(latent)): z_L ~ Poisson(softplus(a)), z_l ~ Poisson(z_{l+1} W_l + RATE_FLOOR), truncated at
        MOST_COUNT as in a pass; what ``gvae sample`` decodes."""
        dt, weights = self.dtype.type, self.weights(params)
        return top_down(self.sizes, u, lambda layer, above, ul: poisson_draw(
            ops.softplus(params[PRIOR]) if above is None else self.affine(above, weights[layer + 1], dt(RATE_FLOOR)),
            ul))

    def likelihood_params(self, params, codes):
        """The pixels' Poisson rates at the codes (bottom first): z_1 W_0 + c."""
        return self.affine(codes[0], self.weights(params)[0], ops.softplus(params[BASE_RATE]))

    @property
    def prior_text(self):
        """What a prior draw is, in words (a picture's title)."""
        return layered_prior_text("count", self.sizes)

    def log_weights(self, params, x, u):
        """:func:`log_weights` of this model."""
        return log_weights(self, params, x, u)


def _softplus_inverse(v):
    v = np.asarray(v, np.float64)
    return v + np.log(-np.expm1(-v))


def log_weights(model, params, x, u):
    """The samples' log-weights for counts x (B, n_in) and uniforms u (K, B, noise_size): ``(rec, log_ratio,
    log_q)``, each (K, B): log p(x|z_1), log p(z) - log q(z|x) over every layer, and log q(z|x), the counts z
    drawn from q (constants of the tape)."""
    dt = model.dtype.type
    zs, log_q, lo = [], 0.0, 0
    for rate, k in zip(model.rates(params, x), model.sizes):
        z = poisson_draw(rate, u[..., lo:lo + k])
        log_q = log_q + ops.sum(ops.poisson_log_prob(z, rate), axis=-1)
        zs.append(z)
        lo += k
    weights = model.weights(params)
    log_p = ops.sum(ops.poisson_log_prob(zs[-1], ops.softplus(params[PRIOR])), axis=-1)
    for layer in range(len(zs) - 1):
        rate = model.affine(zs[layer + 1], weights[layer + 1], dt(RATE_FLOOR))
        log_p = log_p + ops.sum(ops.poisson_log_prob(zs[layer], rate), axis=-1)
    rec = ops.sum(ops.poisson_log_prob(x, model.affine(zs[0], weights[0], ops.softplus(params[BASE_RATE]))), axis=-1)
    return rec, log_p - log_q, log_q

