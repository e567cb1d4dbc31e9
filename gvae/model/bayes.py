"""Full variational Bayes over the decoder's weights (Kingma and Welling, "Auto-Encoding Variational Bayes",
2014, appendix F; the AEVB poster's last section): the decoder's weights theta get a prior
p(theta) = N(0, s^2 I) and a Gaussian posterior q(theta) = N(mu, diag sigma^2), learned with the encoder's
amortised q(z|x) by the bound

    L = sum_i E_{q(theta)} [ELBO(x_i; theta)] - KL(q(theta) || p(theta)),

estimated per minibatch by one reparameterised draw theta = mu + sigma eps shared by the batch, the weight
KL divided by the data size N (the bound per data point). The encoder and the likelihood's own parameters
stay point estimates.

Parameters: the VAE's (the decoder's ``dec.*`` are the means mu), then ``vb.dec.*``, the raw scales:
sigma = softplus(raw) + FLOOR, starting at INIT_SIGMA.
"""
import math

from .. import ops
from .gaussian import positive, positive_inverse
from .objectives import elbo_terms
from .vae import VAE

SCALE_PREFIX = "vb."
FLOOR = 1e-6
INIT_SIGMA = 1e-3  # the weights start nearly at their means: the VAE's initialisation


class BayesianDecoderVAE(VAE):
    """A one-layer :class:`VAE` (the same arguments) whose decoder's weights have a Gaussian posterior
    under the prior N(0, ``prior_scale``^2 I)."""

    def __init__(self, *args, prior_scale=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if len(self.layers) != 1:
            raise ValueError(f"variational Bayes over the decoder takes one stochastic layer, got {len(self.layers)}")
        if not (math.isfinite(prior_scale) and prior_scale > 0):
            raise ValueError(f"the weights' prior scale must be a finite number > 0, got {prior_scale}")
        self.prior_scale = float(prior_scale)
        self.weight_shapes = self.layers[0].decoder.shapes()
        self.weight_count = sum(math.prod(shape) for shape in self.weight_shapes.values())

    def param_shapes(self):
        return {**super().param_shapes(), **{SCALE_PREFIX + n: s for n, s in self.weight_shapes.items()}}

    def new_params(self, rng, x=None):
        """The VAE's parameters as :meth:`VAE.new_params` draws them (the means), every scale at INIT_SIGMA."""
        params = super().new_params(rng, x)
        raw = positive_inverse(INIT_SIGMA, FLOOR)
        for name in self.weight_shapes:
            params.views[SCALE_PREFIX + name][...] = raw
        return params


def weight_scales(model, params):
    """{decoder weight name: sigma}, sigma = softplus(raw) + FLOOR."""
    return {name: positive(params[SCALE_PREFIX + name], FLOOR) for name in model.weight_shapes}


def sampled_weights(model, params, eps_w):
    """``params`` with each decoder weight replaced by its draw mu + sigma eps, eps_w (weight_count,) standard
    normal, cut in the order of ``model.weight_shapes``."""
    out, start = dict(params), 0
    for name, sigma in weight_scales(model, params).items():
        shape = model.weight_shapes[name]
        end = start + math.prod(shape)
        out[name] = params[name] + sigma * eps_w[start:end].reshape(shape)
        start = end
    return out


def weight_kl(model, params):
    """KL(q(theta) || N(0, s^2 I)) = sum [log(s / sigma) + (sigma^2 + mu^2) / (2 s^2) - 1/2] (nats)."""
    s = model.prior_scale
    total = 0.0
    for name, sigma in weight_scales(model, params).items():
        mu = params[name]
        total = total + ops.sum((sigma * sigma + mu * mu) * (0.5 / s ** 2) - ops.log(sigma))
    return total + model.weight_count * (math.log(s) - 0.5)


def bayes_loss(params, model, x, eps, eps_w, kl="analytic", kl_weight=1.0, data_size=1):
    """The negative bound per data point for the batch x (B, n_in): mean_b [kl_weight KL_b - rec_b] under the
    weights drawn with eps_w, plus KL(q(theta) || p(theta)) / ``data_size``. ``aux`` = (the bound per data
    point at weight 1, mean rec, mean KL of z, the weights' KL / data_size)."""
    rec, kl_term = elbo_terms(model, sampled_weights(model, params, eps_w), x, eps, kl)
    per_point = weight_kl(model, params) * (1.0 / data_size)
    return ops.mean(kl_term * kl_weight - rec) + per_point, (ops.mean(rec - kl_term) - per_point, ops.mean(rec),
                                                            ops.mean(kl_term), per_point)


def draw_weight_noise(model, rng):
    """eps_w (weight_count,) standard normal of the model's dtype, from the device generator ``rng``."""
    return rng.standard_normal(model.weight_count, dtype=model.dtype)

