"""The deep variational information bottleneck (Alemi et al., "Deep Variational Information Bottleneck",
ICLR 2017): a classifier through a stochastic code z.

The encoder q(z|x) is a VAE's (an MLP whose output is the head of a posterior family: diagonal, chain,
grid, ...), the "decoder" q(y|z) = softmax(z W + b) a single linear softmax layer on z, as in the paper.
Training maximises, per data point,

    J = E_q(z|x) [log q(y|z)] - beta KL(q(z|x) || N(0, I)),

the expectation by reparameterised samples z = sample(q, eps), the KL (the rate) in the family's closed
form (or by Monte Carlo). At test time the class probabilities are the softmax averaged over samples of z
(the paper uses 12), and the prediction is their argmax.
"""
import numpy as np

from ... import ops
from ...kernels import array_module
from ...model.gaussian import std_normal_log_prob
from ...model.layers import INITS, MLP
from ...model.objectives import KL_ESTIMATORS
from ...model.params import FlatParams
from ...model.vae import StochasticLayer, layer_family


class Classifier:
    """The VIB's model over n_in inputs: ``latent`` units with the posterior ``posterior`` (a family
    name; ``posterior_options``: ``grid_shape``, ``floor``), an encoder of hidden widths ``hidden`` and
    ``activation``, and a linear softmax head over ``classes`` classes.

    ``layers`` holds its one :class:`StochasticLayer` (``encoder``: x -> the family's head; ``decoder``:
    the softmax head z -> logits, the paper's "variational decoder" q(y|z)), so that what sizes a VAE's
    memory sizes this model too. Parameters: ``enc.*`` and ``cls.W0`` (latent, classes), ``cls.b0``
    (classes,), in one flat buffer of ``dtype``, initialised by the scheme ``init``; with the diagonal
    posterior, ``scale_offset`` S > 0 starts the encoder's scale outputs' biases S lower, sigma =
    softplus(rho - S) + floor as Alemi et al. parametrise it (Adam's steps do not depend on where a bias
    starts, so a shifted start is that offset)."""

    def __init__(self, n_in, latent, hidden, classes, activation="elu", posterior="diagonal", dtype=np.float32,
                 posterior_options=None, init="uniform", scale_offset=0.0):
        if int(latent) < 1 or int(n_in) < 1:
            raise ValueError(f"latent and input sizes must be positive, got {latent} and {n_in}")
        if int(classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {classes}")
        if init not in INITS:
            raise ValueError(f"unknown initialisation {init!r}; expected one of {sorted(INITS)}")
        self.n_in, self.size, self.classes = int(n_in), int(latent), int(classes)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation, self.init, self.dtype = activation, init, np.dtype(dtype)
        family = layer_family(posterior, self.size, posterior_options)
        if scale_offset and family.name != "diagonal":
            raise ValueError(f"a scale offset shifts the diagonal posterior's scales, not the {family.name} family's")
        self.scale_offset = float(scale_offset)
        encoder = MLP([self.n_in, *self.hidden, family.head_size(self.size)], activation, "enc.")
        self.layers = [StochasticLayer(1, self.size, family, encoder, MLP([self.size, self.classes], activation, "cls."))]
        self.noise_size = self.size

    @property
    def family(self):
        """The posterior family of q(z|x)."""
        return self.layers[0].family

    def networks(self):
        """The encoder and the softmax head."""
        return [self.layers[0].encoder, self.layers[0].decoder]

    def param_shapes(self):
        """{name: shape} of every parameter, in the order of the flat buffer."""
        layer = self.layers[0]
        return {**layer.encoder.shapes(), **layer.decoder.shapes()}

    def new_params(self, rng, x=None):
        """A freshly initialised :class:`FlatParams` on the host, drawn from the NumPy generator ``rng``.
        ``x`` (the training data) is accepted as :meth:`VAE.new_params` takes it; no part of the
        classifier's initialisation depends on the data."""
        params = FlatParams(self.param_shapes(), self.dtype)
        for net in (self.layers[0].encoder, self.layers[0].decoder):
            net.init(rng, params.views, self.init)
        if self.scale_offset:  # the diagonal head is (mu, rho): the last bias's second half feeds the scales
            params.views[f"enc.b{len(self.hidden)}"][self.size:] -= self.scale_offset
        return params

    def infer(self, params, x, eps=None):
        """x (B, n_in) -> (q, z): the posterior's parameters and z = sample(q, eps) for eps (S, B, latent)
        standard normal, shape (S, B, latent); with ``eps=None`` z is the mean of q, (B, latent)."""
        layer = self.layers[0]
        q = layer.family.split(layer.encoder(params, x), self.size)
        return q, (q.mu if eps is None else layer.family.sample(q, eps))

    def logits(self, params, z):
        """z (..., latent) -> the softmax head's logits (..., classes)."""
        return self.layers[0].decoder(params, z)


def vib_terms(model, params, x, y, eps, kl="analytic"):
    """The VIB objective's two terms per data point with S samples: x (B, n_in), y (B,) int64 labels in
    0..C-1, eps (S, B, latent) standard normal. Returns ``(log_lik, rate)``, each (B,): log_lik =
    mean_s log q(y | z_s), rate = KL(q(z|x) || N(0, I)) in closed form (``"analytic"``) or as
    mean_s [log q(z_s|x) - log N(z_s; 0, I)] (``"mc"``)."""
    if kl not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {kl!r}; expected one of {list(KL_ESTIMATORS)}")
    q, z = model.infer(params, x, eps)
    log_lik = ops.mean(ops.categorical_log_prob(model.logits(params, z), y), axis=0)
    if kl == "analytic":
        return log_lik, model.family.kl(q)
    return log_lik, ops.mean(model.family.log_prob(q, z) - std_normal_log_prob(z), axis=0)


def vib_loss(params, model, x, y, eps, kl="analytic", beta=1e-3):
    """The loss minimised by training, -J = mean_b [beta R_b - log_lik_b] (:func:`vib_terms`), and
    ``aux`` = (J, mean log_lik, mean rate), batch means; ``beta`` >= 0 weighs the rate."""
    log_lik, rate = vib_terms(model, params, x, y, eps, kl)
    objective = ops.mean(log_lik - beta * rate)
    return -objective, (objective, ops.mean(log_lik), ops.mean(rate))


def predict(model, params, x, y, eps):
    """The test-time pass over x (B, n_in) with labels y (B,) and noise eps (S, B, latent), without
    taping: ``(probs, log_lik, rate)`` with probs (B, C) the softmax averaged over the S samples (the
    paper's prediction is its argmax), log_lik (B,) = mean_s log q(y | z_s) and rate (B,) the closed-form
    KL(q(z|x) || N(0, I)); arrays of x's device."""
    q, z = model.infer(params, x, eps)
    logits = model.logits(params, z)
    probs = array_module(logits).exp(logits - ops.logsumexp(logits, axis=-1, keepdims=True)).mean(axis=0)
    return probs, ops.categorical_log_prob(logits, y).mean(axis=0), model.family.kl(q)
