"""The variational ladder autoencoder (Zhao, Song, Ermon, "Learning Hierarchical Features from Generative
Models", 2017): codes z_1 .. z_L injected at different depths of one generative network, inferred bottom-up
from features of increasing depth, with no stochastic chain between them.

Inference:   h_0 = x,  h_l = g_l(h_{l-1}),  q(z_l | x) = the family's q from a linear head on h_l.
Generation:  t_L = f_L(z_L),  t_l = f_l([t_{l+1}, z_l]),  the likelihood's parameters = t_1;
             every z_l ~ N(0, I) independently.
Bound:       E_q log p(x | z_1..z_L) - sum_l KL(q(z_l | x) || N(0, I)).

The deeper a code, the more layers of f it passes through to reach x: the paper's claim is that the
deep codes then carry the abstract features. Each layer's q takes any gvae posterior family. Parameters:
``enc{l}.*`` (g_l and its head; ``enc.*`` for the bottom), ``dec{l}.*`` (f_l), then the likelihood's.
"""
import numpy as np

from ... import ops
from ...model.layers import INITS, MLP
from ...model.likelihoods import get_likelihood
from ...model.params import network_params, network_shapes
from ...model.posteriors import get_family
from ...model.vae import VAE, StochasticLayer, _per_layer, layer_family, layer_widths


class VLAE:
    """A ladder of ``latent`` (a list, bottom first) codes over ``n_in`` observed units: layer l's feature
    network has the widths ``hidden[l]`` (one list for every layer, or one per layer, each non-empty), its
    decoder f_l the same widths reversed; ``posterior``: a family name for every layer or one per layer
    (``posterior_options``: a dict for every layer or one per layer); the likelihood ``likelihood``
    (``likelihood_options``); parameters of ``dtype`` initialised by ``init``. Provides what the objectives
    need (:class:`gvae.model.interface.ObjectiveModel`), so the ELBO and the IWAE bound score it."""
    inference = "bottom-up"  # the features are computed bottom-up; no layer conditions another's posterior
    # Every q(z_l | x) is a function of x alone and every prior N(0, I): each code's ELBO surgery (gvae analyze)
    # has a closed-form q(z_l | x) to mix, where a VAE hierarchy's conditional layers do not.
    independent_codes = True
    split_noise = VAE.split_noise

    @property
    def decoded_codes(self):
        """How many layers' codes, bottom first, the decoder reads: every layer's."""
        return len(self.layers)

    @property
    def prior_text(self):
        """What a prior draw is, in words (a picture's title)."""
        return f"z1 .. z{len(self.layers)} ~ N(0, I) independently, d = " + "-".join(map(str, self.sizes))

    def __init__(self, n_in, latent, hidden, activation="elu", posterior="diagonal", likelihood="bernoulli",
                 dtype=np.float32, posterior_options=None, likelihood_options=None, init="uniform"):
        sizes = [int(latent)] if np.ndim(latent) == 0 else [int(d) for d in latent]
        if not sizes or min(sizes) < 1 or int(n_in) < 1:
            raise ValueError(f"latent and input sizes must be positive, got {latent} and {n_in}")
        if init not in INITS:
            raise ValueError(f"unknown initialisation {init!r}; expected one of {sorted(INITS)}")
        n = len(sizes)
        self.n_in, self.sizes, self.init = int(n_in), tuple(sizes), init
        self.hidden = layer_widths(hidden, n)
        if not all(self.hidden):
            raise ValueError("every layer of a ladder needs hidden widths: its features are the deeper codes' input")
        names = _per_layer("posterior", posterior, n, lambda v: isinstance(v, str))
        options = _per_layer("posterior_options", posterior_options or {}, n, lambda v: isinstance(v, dict))
        self.activation, self.dtype = activation, np.dtype(dtype)
        self.likelihood = get_likelihood(likelihood, self.n_in, **(likelihood_options or {}))
        self.conditional = get_family("diagonal")
        families = [layer_family(name, d, opts, i + 1 if n > 1 else None)
                    for i, (name, d, opts) in enumerate(zip(names, sizes, options))]
        encoders, below = [], self.n_in
        for i, (d, widths, family) in enumerate(zip(sizes, self.hidden, families)):
            encoders.append(MLP([below, *widths, family.head_size(d)], activation, f"enc{'' if i == 0 else i + 1}."))
            below = widths[-1]
        decoders, above = [None] * n, 0  # built top down: each reads the one above it and its own code
        for i in range(n - 1, -1, -1):
            out = self.likelihood.output_size() if i == 0 else self.hidden[i - 1][-1]
            decoders[i] = MLP([above + sizes[i], *self.hidden[i][::-1], out], activation,
                              f"dec{'' if i == 0 else i + 1}.")
            above = out
        self.layers = [StochasticLayer(i + 1, d, f, e, g) for i, (d, f, e, g) in
                       enumerate(zip(sizes, families, encoders, decoders))]
        self.noise_size = sum(sizes)

    def networks(self):
        """Each layer's feature network and decoder, bottom up."""
        return [net for layer in self.layers for net in (layer.encoder, layer.decoder)]

    def param_shapes(self):
        return network_shapes(self)

    def new_params(self, rng, x=None):
        """Freshly initialised parameters on the host from the NumPy generator ``rng``, network by network;
        with the training data ``x`` and the "uniform" scheme, the bottom decoder's last bias where the
        likelihood predicts the data's marginal (:func:`gvae.model.params.network_params`)."""
        return network_params(self, rng, x, self.layers[0].decoder)

    def infer(self, params, x, eps=None):
        """``(qs, zs)`` bottom first: q(z_l | x) from the features h_l, z_l = sample(q_l, eps_l) for eps
        (S, B, noise_size), or the means (B, d_l) with ``eps=None``."""
        noise = self.split_noise(eps) if eps is not None else [None] * len(self.layers)
        qs, zs, h = [], [], x
        for layer, e in zip(self.layers, noise):
            h = layer.encoder.features(params, h)
            q = layer.family.split(layer.encoder.head(params, h), layer.size)
            qs.append(q)
            zs.append(q.mu if e is None else layer.family.sample(q, e))
        return qs, zs

    def mean_heads(self, params, x):
        """The head values (B, head_size(d_l)) of each layer's q(z_l | x), bottom first: the q's parameters
        as the family's ``split`` takes them (each a function of x alone, so the mean pass is every pass)."""
        heads, h = [], x
        for layer in self.layers:
            h = layer.encoder.features(params, h)
            heads.append(layer.encoder.head(params, h))
        return heads

    def log_q(self, params, x, zs):
        """log q(z_1, ..., z_L | x) of given samples zs (bottom first, (..., B, d_l)): each layer's log-density
        under its q(z_l | x), summed (no layer's q depends on the others' samples)."""
        total = None
        for layer, q, z in zip(self.layers, self.infer(params, x)[0], zs):
            term = layer.family.log_prob(q, z)
            total = term if total is None else total + term
        return total

    def encode(self, params, x):
        """The bottom layer's q(z_1 | x)."""
        return self.infer(params, x)[0][0]

    def priors(self, params, zs):
        """Every code's prior is N(0, I): None for each layer."""
        return [None] * len(self.layers)

    def prior_sample(self, params, eps):
        """Every code drawn from N(0, I): the noise eps (..., noise_size) cut into the layers' codes."""
        return self.split_noise(eps)

    def likelihood_params(self, params, zs):
        """t_L = f_L(z_L), t_l = f_l([t_{l+1}, z_l]): the likelihood's parameters t_1 for the codes zs, bottom
        first, each (..., d_l) with one leading shape."""
        t = None
        for layer, z in zip(self.layers[::-1], zs[::-1]):
            t = layer.decoder(params, z if t is None else ops.concatenate2(t, z))
        return t
