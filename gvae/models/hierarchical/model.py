"""Hierarchical variational models (Ranganath, Tran, Blei, "Hierarchical Variational Models", 2016), amortised
as the survey writes them: the posterior of a VAE's code is a mixture over the mean-field posterior's own
parameters,

    q(z|x) = integral q(lambda|x) prod_i q(z_i | lambda_i) d lambda,

lambda_i = (m_i, s_i) the mean and raw scale of z_i (q(z_i | lambda_i) = N(m_i, (softplus(s_i) + floor)^2)),
and q(lambda|x) any gvae posterior family over the 2d numbers lambda (a banded precision among them):
a non-Gaussian q(z|x) with dependent units. Its log-density has no closed form; training maximises the
auxiliary bound of the paper's eq. (5), with a reverse model r(lambda | z, x) (a network of its own giving
the same family over lambda):

    L(x) = E_{q(lambda|x) q(z|lambda)} [log p(x|z) + log N(z; 0, I) - log q(lambda|x) - log q(z|lambda)
                                        + log r(lambda|z, x)]  <=  ELBO of q(z|x)  <=  log p(x),

every draw reparameterised. One draw's terms are the log-weight of importance sampling on the extended
space (z, lambda) with proposal q(lambda|x) q(z|lambda) and target p(x, z) r(lambda|z, x), whose marginal is
p(x, z): log (1/K) sum_k w_k is a lower bound on log p(x) that tightens as K grows (:func:`log_weights`).

Parameters: ``enc.*`` (x -> q(lambda|x)'s head), ``rev.*`` ([z, x] -> r's head), ``dec.*`` (z -> the
likelihood's parameters), then the likelihood's.
"""
import numpy as np

from ... import ops
from ...model.gaussian import positive, std_normal_log_prob
from ...model.layers import MLP
from ...model.params import NetworkModel
from ...rules.gaussian import LOG_2PI
from ...model.vae import layer_family

SCALE_FLOOR = 1e-4  # the floor of q(z_i | lambda_i)'s scale, as gvae's diagonal family's


class HVM(NetworkModel):
    """A VAE of ``n_in`` units with ``latent`` code units whose posterior is the hierarchical variational
    model above: q(lambda|x) and r(lambda|z, x) of the family ``posterior`` over 2 ``latent`` numbers
    (``posterior_options``), networks of widths ``hidden`` and ``activation``, the likelihood ``likelihood``
    (``likelihood_options``), parameters of ``dtype`` initialised by ``init``. The noise of a pass is
    (S, B, noise_size): lambda's 2 ``latent`` units, then z's ``latent``."""

    def __init__(self, n_in, latent, hidden, activation="elu", posterior="diagonal", likelihood="bernoulli",
                 dtype=np.float32, posterior_options=None, likelihood_options=None, init="uniform"):
        super().__init__(n_in, latent, hidden, activation, likelihood, dtype, likelihood_options, init)
        self.family = layer_family(posterior, 2 * self.size, posterior_options)
        head = self.family.head_size(2 * self.size)
        self.encoder = MLP([self.n_in, *self.hidden, head], activation, "enc.")
        self.reverse = MLP([self.size + self.n_in, *self.hidden, head], activation, "rev.")
        self.decoder = MLP([self.size, *self.hidden[::-1], self.likelihood.output_size()], activation, "dec.")
        self.noise_size = 3 * self.size

    @property
    def prior_text(self):
        """What a prior draw is, in words (a picture's title)."""
        return f"z ~ N(0, I), d = {self.size}"

    def networks(self):
        """The encoder, the reverse model's network and the decoder, in the order of the flat buffer."""
        return [self.encoder, self.reverse, self.decoder]

    def prior_sample(self, params, eps):
        """[z]: draws z ~ N(0, I) (..., latent), z's slice of a pass's noise eps (..., noise_size) (lambda's
        slice unread): what ``gvae sample`` decodes."""
        return [eps[..., 2 * self.size:]]

    def code(self, params, x, eps):
        """A pass's draws: x (B, n_in), eps (S, B, noise_size) -> (q_lambda, lam, z, log q(z|lambda)), lam
        (S, B, 2 latent), z (S, B, latent), the log-density (S, B)."""
        d = self.size
        q = self.family.split(self.encoder(params, x), 2 * d)
        lam = self.family.sample(q, eps[..., :2 * d])
        e = eps[..., 2 * d:]
        scale = positive(lam[..., d:], SCALE_FLOOR)
        z = lam[..., :d] + scale * e
        # (e is not traced: its square's sum is scaled by the kernels too, so that a recorded step replays it)
        log_qz = (ops.multiply(ops.sum(ops.multiply(e, e), axis=-1), -0.5) - ops.sum(ops.log(scale), axis=-1)
                  - 0.5 * d * LOG_2PI)
        return q, lam, z, log_qz


def log_weights(model, params, x, eps):
    """The extended space's importance log-weights of each draw, (S, B), split as ``(rec, log_ratio)``:
    rec = log p(x|z), log_ratio = log N(z; 0, I) + log r(lambda|z, x) - log q(lambda|x) - log q(z|lambda).
    Their mean over the draws is the auxiliary bound; log mean exp of their sum a bound on log p(x)."""
    q, lam, z, log_qz = model.code(params, x, eps)
    rec = model.likelihood.log_prob(model.decoder(params, z), x, params)
    xs = ops.broadcast_to(x, z.shape[:-1] + x.shape[-1:])
    r = model.family.split(model.reverse(params, ops.concatenate2(z, xs)), 2 * model.size)
    log_ratio = std_normal_log_prob(z) + model.family.log_prob(r, lam) - model.family.log_prob(q, lam) - log_qz
    return rec, log_ratio


def hvm_loss(params, model, x, eps, kl_weight=1.0):
    """The loss minimised by training, -mean_b mean_s [rec + kl_weight log_ratio] (the auxiliary bound at
    weight 1), and ``aux`` = (the bound at weight 1, mean rec, -mean log_ratio), batch means."""
    rec, log_ratio = log_weights(model, params, x, eps)
    rec, log_ratio = ops.mean(rec, axis=0), ops.mean(log_ratio, axis=0)
    return -ops.mean(rec + log_ratio * kl_weight), (ops.mean(rec + log_ratio), ops.mean(rec), -ops.mean(log_ratio))
