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

With a banded ``weight_posterior`` (chain, grid, extgrid), the incoming weights of each output unit j,
W[:, j] over the fan_in inputs, have the Gaussian of precision L L^T, L on the family's stencil over the
inputs, written L = S^-1 M: S = diag(sigma) from the same raw scales, M unit lower-triangular with the free
links ``vb.links.dec.W*`` (fan_out, K - 1, fan_in) on the stencil's off-diagonals, starting at 0 (the
diagonal posterior). Rows scaled so, the links are correlations of order one whatever the scales, which
Adam moves at its rate (a raw L_ii = 1 / sigma of 1,000 would hardly move), and log det Sigma = 2 sum log
sigma. A draw is W[:, j] = mu + L^-T eps and the KL against N(0, s^2 I) is

    sum_i [(Sigma_ii + mu_i^2) / (2 s^2) - log sigma_i + log s - 1/2],

the diagonal family's with sigma^2 replaced by diag(Sigma) (the band's selected inversion). The biases keep
the diagonal posterior.
"""
import math

from ... import ops
from ...model.constants import DeviceConstant
from ...model.gaussian import band_sample, positive, positive_inverse
from ...model.objectives import elbo_terms
from ...model.vae import VAE, layer_family

SCALE_PREFIX = "vb."
LINK_PREFIX = "vb.links."
WEIGHT_POSTERIORS = ("diagonal", "chain", "grid", "extgrid")
FLOOR = 1e-6
INIT_SIGMA = 1e-3  # the weights start nearly at their means: the VAE's initialisation


def weight_bands(weight_posterior, name, fan_in):
    """The stencil of the banded family ``weight_posterior`` over the ``fan_in`` inputs of the weight ``name``:
    (offsets, float64 mask (K, fan_in)); a ValueError naming the weight where the family has no such stencil."""
    try:
        return layer_family(weight_posterior, fan_in).layout(fan_in)
    except ValueError as e:  # the family's words, less its advice on --grid-shape (q(z|x)'s)
        raise ValueError(f"the {weight_posterior} posterior over the {fan_in} inputs of {name}: "
                         f"{str(e).split(';')[0]}; choose another weight posterior or widths with such a lattice") from None


class BayesianDecoderVAE(VAE):
    """A one-layer :class:`VAE` (the same arguments) whose decoder's weights have a Gaussian posterior
    under the prior N(0, ``prior_scale``^2 I)."""

    def __init__(self, *args, prior_scale=1.0, weight_posterior="diagonal", **kwargs):
        super().__init__(*args, **kwargs)
        if len(self.layers) != 1:
            raise ValueError(f"variational Bayes over the decoder takes one stochastic layer, got {len(self.layers)}")
        if not (math.isfinite(prior_scale) and prior_scale > 0):
            raise ValueError(f"the weights' prior scale must be a finite number > 0, got {prior_scale}")
        if weight_posterior not in WEIGHT_POSTERIORS:
            raise ValueError(f"the weights' posterior must be one of {list(WEIGHT_POSTERIORS)}, got {weight_posterior!r}")
        self.prior_scale, self.weight_posterior = float(prior_scale), weight_posterior
        self.weight_shapes = self.layers[0].decoder.shapes()
        self.weight_count = sum(math.prod(shape) for shape in self.weight_shapes.values())
        # {weight name: (offsets, off-diagonal mask (K - 1, fan_in) on each device)} of the banded matrices
        self.bands = {}
        if weight_posterior != "diagonal":
            for name, shape in self.weight_shapes.items():
                if len(shape) == 2:
                    offsets, mask = weight_bands(weight_posterior, name, shape[0])
                    self.bands[name] = (offsets, DeviceConstant(mask[1:]))

    def param_shapes(self):
        links = {LINK_PREFIX + n: (self.weight_shapes[n][1], len(offsets) - 1, self.weight_shapes[n][0])
                 for n, (offsets, _) in self.bands.items()}
        return {**super().param_shapes(), **{SCALE_PREFIX + n: s for n, s in self.weight_shapes.items()}, **links}

    def new_params(self, rng, x=None):
        """The VAE's parameters as :meth:`VAE.new_params` draws them (the means), every scale at INIT_SIGMA."""
        params = super().new_params(rng, x)
        raw = positive_inverse(INIT_SIGMA, FLOOR)
        for name in self.weight_shapes:
            params.views[SCALE_PREFIX + name][...] = raw
        for name in self.bands:
            params.views[LINK_PREFIX + name][...] = 0.0
        return params


def weight_scales(model, params):
    """{decoder weight name: sigma}, sigma = softplus(raw) + FLOOR."""
    return {name: positive(params[SCALE_PREFIX + name], FLOOR) for name in model.weight_shapes}


def band_factors(model, params, scales=None):
    """{banded weight name: L (fan_out, K, fan_in)}: each output unit's precision factor over its inputs in
    band storage, L = S^-1 M (the module's docstring); ``scales`` from :func:`weight_scales` if given."""
    scales = weight_scales(model, params) if scales is None else scales
    out = {}
    for name, (offsets, mask) in model.bands.items():
        fan_in, fan_out = model.weight_shapes[name]
        inv = ops.reshape(1.0 / ops.transpose(scales[name]), (fan_out, 1, fan_in))
        links = params[LINK_PREFIX + name] * mask.like(params[LINK_PREFIX + name])
        out[name] = ops.concatenate2(inv, links * inv, axis=-2)
    return out


def sampled_weights(model, params, eps_w):
    """``params`` with each decoder weight replaced by its draw, eps_w (weight_count,) standard normal, cut in
    the order of ``model.weight_shapes``: mu + sigma eps, or for a banded weight each column mu + L^-T eps
    with eps the slice read as (fan_out, fan_in)."""
    out, start = dict(params), 0
    scales = weight_scales(model, params)
    factors = band_factors(model, params, scales)
    for name, sigma in scales.items():
        shape = model.weight_shapes[name]
        end = start + math.prod(shape)
        if name in factors:
            eps = eps_w[start:end].reshape((1, shape[1], shape[0]))
            draw = band_sample(factors[name], model.bands[name][0], ops.transpose(params[name]), eps)
            out[name] = ops.transpose(ops.reshape(draw, (shape[1], shape[0])))
        else:
            out[name] = params[name] + sigma * eps_w[start:end].reshape(shape)
        start = end
    return out


def weight_kl(model, params):
    """KL(q(theta) || N(0, s^2 I)) = sum [log(s / sigma) + (Sigma_ii + mu^2) / (2 s^2) - 1/2] (nats), Sigma_ii =
    sigma^2 for a diagonal weight and diag(Sigma) of its band for a banded one."""
    s = model.prior_scale
    scales = weight_scales(model, params)
    factors = band_factors(model, params, scales)
    total = 0.0
    for name, sigma in scales.items():
        mu = params[name]
        if name in factors:
            variance = ops.transpose(ops.band_diag_inv(factors[name], model.bands[name][0], check=False))
        else:
            variance = sigma * sigma
        total = total + ops.sum((variance + mu * mu) * (0.5 / s ** 2) - ops.log(sigma))
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

