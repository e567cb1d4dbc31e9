"""Deep variational canonical correlation analysis (Wang, Yan, Lee, Livescu, "Deep variational canonical
correlation analysis", 2016): two views x1, x2 of one thing, a shared code z inferred from view 1 alone,
and a decoder per view.

VCCA:          q(z|x1);  p(x1|z) p(x2|z);  p(z) = N(0, I).
VCCA-private:  also a private code per view, h1 ~ q(h1|x1) and h2 ~ q(h2|x2) (diagonal Gaussians, as in
               the paper), and decoders p(x1|z, h1), p(x2|z, h2) of the concatenated codes.

Training maximises, per pair, the bound

    E_q [log p(x1|.) + log p(x2|.)] - KL(q(z|x1) || N(0, I)) [- KL(q(h1|x1) || N(0, I)) - KL(q(h2|x2) || N(0, I))],

by reparameterised samples, the rate weighted by the trainer's ``kl_weight`` (1 at the paper's bound).
q(z|x1) is any gvae posterior family (a banded precision among them). By default both views are modelled
by Bernoulli likelihoods of their intensities in [0, 1] (the cross-entropy of the pixels, a proper density
for binary pixels only): the paper's measurement is a linear SVM on the mean of q(z|x1), not the
likelihood.

``"diagonal-gaussian"`` models a view as N(mu, diag psi) with the mean and each unit's variance psi =
softplus + floor from its decoder (:class:`gvae.model.likelihoods.Gaussian` with ``psi="decoder"``), as
Wang et al.'s own code models noisy MNIST's view 2 (its "least squares loss, with learned std").
``"pixel-gaussian"`` models a view as N(mu, diag(1e-6 + exp(v))), the mean from its decoder and v a
learned log-variance per unit shared by all pairs (:class:`PixelGaussianNoise`), as Wang et al.'s released
code models noisy MNIST's view 2; ``view_mean="sigmoid"`` takes mu = sigmoid(decoder output), in (0, 1), as
that code does (its MNIST decoders end in a sigmoid), where ``"linear"`` takes the output itself.
``likelihood`` names one likelihood for both views or a pair, one per view.
``likelihood="gaussian"`` models view k as N(dec_k(code), (L_k L_k^T)^-1), L_k a learned dense
lower-triangular factor shared by all pairs (band storage on the full band, as the ``full`` posterior);
with linear decoders (no hidden layer) that is probabilistic CCA's generative model (Bach and Jordan, "A
probabilistic interpretation of canonical correlation analysis", 2005). Its maximum-likelihood solution is
the bound's maximiser only when q can be the exact posterior p(z|x1, x2), which depends on both views:
``shared_from="both"`` infers z from the concatenated views for that reason (the paper's q(z|x1) loosens
the bound by E KL(q(z|x1) || p(z|x1, x2))).
"""
import numpy as np

from ... import ops
from ...kernels import array_module
from ...model.gaussian import LOG_2PI, band_factor, band_log_density, positive_inverse, std_normal_log_prob
from ...model.layers import INITS, MLP, dropout_mask
from ...model.likelihoods import Bernoulli, Gaussian
from ...model.objectives import KL_ESTIMATORS
from ...model.params import FlatParams
from ...model.posteriors import get_family
from ...model.vae import layer_family


VIEW_LIKELIHOODS = ("bernoulli", "gaussian", "diagonal-gaussian", "pixel-gaussian")
SHARED_FROM = ("view1", "both")
DECODER_DRAWS = ("shared", "own")
VIEW_MEANS = ("linear", "sigmoid")


class FullGaussianNoise:
    """A view's noise N(0, (L L^T)^-1) around its decoder's output: L (n, n) lower-triangular, one for all
    pairs, in the ``full`` posterior family's band storage and layout (row k the k-th subdiagonal),
    parameter ``{prefix}L`` (n, n): L[0] = softplus(raw[0]) + floor, the other rows as they are where the
    matrix has them. L = I to start."""

    def __init__(self, n, prefix, floor=1e-4):
        self.n, self.name, self.floor = int(n), f"{prefix}L", floor
        self.family = get_family("full", floor=floor)
        self.offsets = self.family.layout(self.n)[0]

    def shapes(self):
        return {self.name: (self.n, self.n)}

    def init(self, rng, params, scheme=None):
        """L = I (draws nothing from ``rng``; ``scheme`` is the networks' and does not apply)."""
        params[self.name][...] = 0
        params[self.name][0] = positive_inverse(1.0, self.floor)

    def output_size(self):
        """The decoder's width for this view: its mean."""
        return self.n

    def log_prob(self, mean, x, params):
        """log N(x; mean, (L L^T)^-1) summed over the units: mean (S, B, n), x (B, n) -> (S, B) (a
        likelihood's signature, :class:`gvae.model.likelihoods.Likelihood`)."""
        L = band_factor(params[self.name], self.family.off_mask(self.n), self.floor)
        return band_log_density(L, self.offsets, x, mean)


class PixelGaussianNoise:
    """A view's noise N(0, diag(floor + exp(v))) around its mean, the decoder's output (``mean="linear"``) or
    its sigmoid (``"sigmoid"``): v (n,) a learned log-variance per unit, one for all pairs, parameter
    ``{prefix}logvar``. v = 0 to start (variance 1 + floor)."""

    def __init__(self, n, prefix, floor=1e-6, mean="linear"):
        self.n, self.name, self.floor, self.mean = int(n), f"{prefix}logvar", floor, mean
        # What a pass holds per sample, as the training memory check counts it: the residual, and a sigmoid's mean.
        self.sizes = (self.n,) * (2 if mean == "sigmoid" else 1)

    def shapes(self):
        return {self.name: (self.n,)}

    def init(self, rng, params, scheme=None):
        """v = 0 (draws nothing from ``rng``; ``scheme`` is the networks' and does not apply)."""
        params[self.name][...] = 0

    def output_size(self):
        """The decoder's width for this view: its mean."""
        return self.n

    def log_prob(self, out, x, params):
        """sum_i log N(x_i; mean_i, floor + exp(v_i)), mean = out or sigmoid(out): out (S, B, n), x (B, n) ->
        (S, B)."""
        var = ops.exp(params[self.name]) + params[self.name].dtype.type(self.floor)
        r = x - (ops.sigmoid(out) if self.mean == "sigmoid" else out)
        return -0.5 * ops.sum(r * r / var + ops.log(var), axis=-1) - 0.5 * self.n * LOG_2PI


class VCCA:
    """VCCA (``private`` = 0) or VCCA-private (``private`` > 0 units per view) of two views of ``n_in`` and
    ``n_in2`` units: ``latent`` shared units with the posterior ``posterior`` (a family name;
    ``posterior_options``: ``grid_shape``, ``floor``), networks of hidden widths ``hidden`` and
    ``activation``, parameters in one flat buffer of ``dtype`` initialised by ``init``; ``likelihood`` of
    the views ``"bernoulli"``, ``"gaussian"`` (a learned dense precision per view), ``"diagonal-gaussian"``
    (a variance per unit from the decoder) or ``"pixel-gaussian"`` (a learned variance per unit), for both
    views or a pair (view 1's, view 2's; see the module), and q(z|.) ``shared_from`` view 1 (the paper's
    ``"view1"``) or ``"both"`` views. ``decoder_draws``: the two decoders decode the same S draws of z
    (``"shared"``) or each its ``"own"`` S draws, as Wang et al.'s released code draws them. ``view_mean``:
    a pixel-gaussian view's mean, its decoder's output (``"linear"``) or the output's ``"sigmoid"``, for both
    views or a pair (a view of another likelihood takes ``"linear"``).

    Parameters: ``enc.*`` (x1, or x1 and x2 concatenated -> the family's head), ``dec1.*`` and ``dec2.*``
    (the code -> each view's logits or mean, and a diagonal Gaussian view's variances); with private codes
    ``priv1.*`` (x1 -> (mu, log sigma) of h1) and ``priv2.*`` (x2 -> h2); with dense Gaussian views
    ``noise1.L`` and/or ``noise2.L``; with per-unit variances ``noise1.logvar`` and/or ``noise2.logvar``. The
    noise of a pass is (S, B, noise_size): z's ``latent`` units first, then h1's and h2's, then with
    ``decoder_draws="own"`` decoder 2's own draw of z's."""

    def __init__(self, n_in, n_in2, latent, hidden, activation="elu", posterior="diagonal", private=0,
                 dtype=np.float32, posterior_options=None, init="uniform", likelihood="bernoulli",
                 shared_from="view1", decoder_draws="shared", view_mean="linear"):
        if min(int(n_in), int(n_in2), int(latent)) < 1 or int(private) < 0:
            raise ValueError(f"VCCA needs positive view and latent sizes and private >= 0, got views {n_in}, {n_in2}, "
                             f"latent {latent}, private {private}")
        if init not in INITS:
            raise ValueError(f"unknown initialisation {init!r}; expected one of {sorted(INITS)}")
        likelihoods = (likelihood, likelihood) if isinstance(likelihood, str) else tuple(likelihood)
        if len(likelihoods) != 2 or any(name not in VIEW_LIKELIHOODS for name in likelihoods):
            raise ValueError(f"a VCCA view likelihood is one of {list(VIEW_LIKELIHOODS)}, for both views or a pair, "
                             f"got {likelihood!r}")
        if shared_from not in SHARED_FROM:
            raise ValueError(f"VCCA infers the shared code from {list(SHARED_FROM)}, got {shared_from!r}")
        if decoder_draws not in DECODER_DRAWS:
            raise ValueError(f"VCCA's decoders draw z as one of {list(DECODER_DRAWS)}, got {decoder_draws!r}")
        means = (view_mean, view_mean) if isinstance(view_mean, str) else tuple(view_mean)
        if len(means) != 2 or any(mean not in VIEW_MEANS for mean in means):
            raise ValueError(f"a VCCA view's mean is one of {list(VIEW_MEANS)}, for both views or a pair, "
                             f"got {view_mean!r}")
        if any(mean == "sigmoid" and name != "pixel-gaussian" for name, mean in zip(likelihoods, means)):
            raise ValueError(f"a sigmoid mean is a pixel-gaussian view's; the views' likelihoods are {likelihoods} "
                             f"and their means {means}")
        self.n_in, self.n_in2, self.size, self.private = int(n_in), int(n_in2), int(latent), int(private)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation, self.init, self.dtype = activation, init, np.dtype(dtype)
        self.likelihoods, self.shared_from, self.decoder_draws = likelihoods, shared_from, decoder_draws
        self.family = layer_family(posterior, self.size, posterior_options)
        code = self.size + self.private
        seen = self.n_in + (self.n_in2 if shared_from == "both" else 0)
        self.encoder = MLP([seen, *self.hidden, self.family.head_size(self.size)], activation, "enc.")
        self.views = tuple(_view_model(name, n, k + 1, mean)
                           for k, (n, name, mean) in enumerate(zip((self.n_in, self.n_in2), likelihoods, means)))
        self.decoders = tuple(MLP([code, *self.hidden, view.output_size()], activation, f"dec{k + 1}.")
                              for k, view in enumerate(self.views))
        self.private_family = layer_family("diagonal", self.private) if self.private else None
        self.private_encoders = () if not self.private else tuple(
            MLP([n, *self.hidden, self.private_family.head_size(self.private)], activation, f"priv{k}.")
            for k, n in ((1, self.n_in), (2, self.n_in2)))
        # The dense noises' parameters follow the networks', view 1's first (the layout of earlier checkpoints).
        self.noises = tuple(view for view in self.views if isinstance(view, (FullGaussianNoise, PixelGaussianNoise)))
        # One joint draw of the codes, then decoder 2's own draw of z where the decoders draw apart.
        self.joint_noise = self.size + 2 * self.private
        self.noise_size = self.joint_noise + (self.size if decoder_draws == "own" else 0)

    def networks(self):
        """Every network (and view noise) of the model, in the order of the flat buffer."""
        return [self.encoder, *self.decoders, *self.private_encoders, *self.noises]

    def param_shapes(self):
        """{name: shape} of every parameter, in the order of the flat buffer."""
        return {name: shape for net in self.networks() for name, shape in net.shapes().items()}

    def new_params(self, rng, x=None):
        """A freshly initialised :class:`FlatParams` on the host, drawn from the NumPy generator ``rng``,
        network by network in the order of :meth:`networks`. ``x`` (the training data) is accepted as
        :meth:`VAE.new_params` takes it; nothing here depends on the data."""
        params = FlatParams(self.param_shapes(), self.dtype)
        for net in self.networks():
            net.init(rng, params.views, self.init)
        return params

    def shared(self, params, x1, eps=None, x2=None, masks=None):
        """x1 (B, n_in) [and x2 (B, n_in2) when ``shared_from="both"``] -> (q, z): q(z|.)'s parameters and
        z = sample(q, eps) for eps (S, B, latent), shape (S, B, latent); with ``eps=None`` z is the mean of
        q, (B, latent). ``masks``: the encoder's dropout masks (training only)."""
        if self.shared_from == "both":
            if x2 is None:
                raise ValueError("this VCCA infers its shared code from both views (shared_from='both'): give x2")
            x1 = array_module(x1, x2).concatenate((x1, x2), axis=-1)
        q = self.family.split(self.encoder(params, x1, masks), self.size)
        return q, (q.mu if eps is None else self.family.sample(q, eps))

    def view_log_lik(self, params, k, out, x):
        """log p(x_k|.) of view k (0 or 1) for its decoder's output out (S, B, n_k; 2 n_k for a diagonal
        Gaussian view) and x (B, n_k) -> (S, B)."""
        return self.views[k].log_prob(out, x, params)

    def dropout_masks(self, rng, batch, rate, input_rate=0.0, code_rate=0.0, samples=1):
        """Dropout masks for ``batch`` pairs, each 0 or 1 / (1 - its rate): of every network's hidden layers at
        ``rate`` ({prefix: [arrays (batch, width)]}, :meth:`MLP.dropout_masks`; none at rate 0), then with
        ``input_rate`` > 0 of the encoders' inputs ({"input": (view 1's (batch, n_in), view 2's (batch,
        n_in2))}), then with ``code_rate`` > 0 of the codes entering the decoders ({"codes": (decoder 1's,
        decoder 2's), each (batch, latent + private)}). The decoders' masks (hidden and codes) are shared by
        the samples of a pair; with ``decoder_draws="own"`` each of the ``samples`` draws has its own, (samples,
        batch, width), as a decoder run once per draw drops its units."""
        lead = (samples,) if self.decoder_draws == "own" else ()
        masks = {net.prefix: net.dropout_masks(rng, batch, rate, self.dtype, lead if net in self.decoders else ())
                 for net in self.networks() if isinstance(net, MLP)} if rate else {}
        if input_rate:
            masks["input"] = tuple(dropout_mask(rng, (batch, n), input_rate, self.dtype) for n in (self.n_in, self.n_in2))
        if code_rate:
            masks["codes"] = tuple(dropout_mask(rng, (*lead, batch, self.size + self.private), code_rate, self.dtype)
                                   for _ in self.decoders)
        return masks

    def _draws(self, params, x1, x2, eps, masks=None, joint=False):
        """One pass of the codes for eps (S, B, noise_size): ``(latents, liks)``, latents the (family, q,
        draws) of the shared code, then of each private one, draws a tuple of (S, B, size) arrays (two for the
        shared code where the decoders draw it apart), and liks each view's log p(x_k|.) (S, B) at its
        decoder's code. ``masks``: dropout's (:meth:`dropout_masks`), in training only. ``joint``: both
        decoders decode the first draw of z whatever ``decoder_draws`` says (a joint draw of the codes)."""
        masks = masks or {}
        views = (x1, x2)
        # What the encoders read: the views, each times its input mask in training (the targets stay whole).
        seen = views if "input" not in masks else tuple(ops.multiply(v, m) for v, m in zip(views, masks["input"]))
        q, z = self.shared(params, seen[0], eps[..., :self.size], seen[1], masks.get(self.encoder.prefix))
        draws = (z,) if joint or self.decoder_draws == "shared" else (
            z, self.family.sample(q, eps[..., self.joint_noise:self.joint_noise + self.size]))
        latents, codes = [(self.family, q, draws)], [draws[0], draws[-1]]
        for k, encoder in enumerate(self.private_encoders):
            lo = self.size + k * self.private
            qh = self.private_family.split(encoder(params, seen[k], masks.get(encoder.prefix)), self.private)
            h = self.private_family.sample(qh, eps[..., lo:lo + self.private])
            codes[k] = ops.concatenate2(codes[k], h)
            latents.append((self.private_family, qh, (h,)))
        if "codes" in masks:
            codes = [ops.multiply(code, m) for code, m in zip(codes, masks["codes"])]
        liks = tuple(self.view_log_lik(params, k, decoder(params, code, masks.get(decoder.prefix)), x)
                     for k, (decoder, code, x) in enumerate(zip(self.decoders, codes, views)))
        return latents, liks

    def view_terms(self, params, x1, x2, eps, kl="analytic", masks=None):
        """The bound's terms per pair with S samples: x1 (B, n_in), x2 (B, n_in2), eps (S, B, noise_size).
        Returns ``(rec1, rec2, rate, private_rates)``: rec_k = mean_s log p(x_k|.) and rate the shared code's
        KL(q || N(0, I)), each (B,), and private_rates the private codes' KL terms, one (B,) per view (an empty
        tuple without them), in closed form
        (``"analytic"``) or as mean_s [log q - log N(0, I)] (``"mc"``). ``masks``: dropout's
        (:meth:`dropout_masks`), in training only."""
        if kl not in KL_ESTIMATORS:
            raise ValueError(f"unknown KL estimator {kl!r}; expected one of {list(KL_ESTIMATORS)}")
        latents, liks = self._draws(params, x1, x2, eps, masks)
        rate, *private_rates = (_rate(family, q, draws, kl) for family, q, draws in latents)
        rec1, rec2 = (ops.mean(lik, axis=0) for lik in liks)
        return rec1, rec2, rate, tuple(private_rates)

    def log_weights(self, params, x1, x2, eps):
        """log p(x1, x2, codes) - log q(codes|.) of each of S draws per pair (S, B), the codes drawn from eps
        (S, B, noise_size) as the bound draws them: importance weights whose log-mean-exp over the draws is
        a lower bound on log p(x1, x2) that tightens as S grows (Burda et al., "Importance weighted
        autoencoders"), equal to it for every draw where q is the exact posterior."""
        latents, (lik1, lik2) = self._draws(params, x1, x2, eps, joint=True)
        weights = lik1 + lik2
        for family, q, (draw,) in latents:
            weights = weights + (std_normal_log_prob(draw) - family.log_prob(q, draw))
        return weights

    def terms(self, params, x1, x2, eps, kl="analytic"):
        """``(rec, rate)`` per pair (:meth:`view_terms`), rec = rec1 + rec2: the bound is rec - rate."""
        rec1, rec2, rate, private_rates = self.view_terms(params, x1, x2, eps, kl)
        return rec1 + rec2, rate + _total(private_rates)


def _view_model(name, n, view, mean):
    """View ``view``'s (1 or 2) observation model of ``n`` units called ``name``: its decoder's output size and
    log_prob(out, x, params). A diagonal Gaussian view's decoder outputs its means, then its variances' raw
    values; a pixel-gaussian view's mean is the output or its sigmoid (``mean``)."""
    if name == "bernoulli":
        return Bernoulli(n)
    if name == "diagonal-gaussian":
        return Gaussian(n, psi="decoder")
    if name == "pixel-gaussian":
        return PixelGaussianNoise(n, f"noise{view}.", mean=mean)
    return FullGaussianNoise(n, f"noise{view}.")


def _rate(family, q, draws, kl):
    """KL(q || N(0, I)) per data point: the family's closed form, or the Monte Carlo mean over the samples of
    every array of ``draws`` (each (S, B, size))."""
    if kl == "analytic":
        return family.kl(q)
    rates = [ops.mean(family.log_prob(q, z) - std_normal_log_prob(z), axis=0) for z in draws]
    return rates[0] if len(rates) == 1 else _total(rates) / len(rates)


def vcca_loss(params, model, x1, x2, eps, kl="analytic", kl_weight=1.0, view_weight=1.0, private_weight=1.0,
              masks=None):
    """The loss minimised by training, mean_b [kl_weight (rate_b + w1 private_rate1_b + w2 private_rate2_b) -
    rec1_b - view_weight rec2_b] (:meth:`VCCA.view_terms`), and ``aux`` = (the bound at weights 1, mean rec1 +
    rec2, mean rate of every code), batch means. ``view_weight`` > 1 tempers view 2's likelihood: its term alone
    rewards the class (the only thing the views share), by at most log 10 nats a pair at weight 1;
    ``private_weight``, one number w1 = w2 or a pair (w1, w2), > 1 makes the private codes dearer than the shared
    one; ``masks``: dropout's (:meth:`VCCA.dropout_masks`; None: none)."""
    weights = tuple(private_weight) if isinstance(private_weight, (tuple, list)) else (private_weight,) * 2
    if len(weights) != 2:
        raise ValueError(f"private_weight is one weight or one per view (two), got {len(weights)}")
    rec1, rec2, rate, private_rates = model.view_terms(params, x1, x2, eps, kl, masks)
    rec1, rec2, rate = ops.mean(rec1), ops.mean(rec2), ops.mean(rate)
    private_rate = ops.mean(_total(private_rates)) if private_rates else 0.0
    rec, total_rate = rec1 + rec2, rate + private_rate
    if weights[0] == weights[1] or not private_rates:
        weighted = rate + weights[0] * private_rate
    else:
        weighted = rate + weights[0] * ops.mean(private_rates[0]) + weights[1] * ops.mean(private_rates[1])
    loss = kl_weight * weighted - rec1 - view_weight * rec2
    return loss, (rec - total_rate, rec, total_rate)


def _total(rates):
    """The sum of the per-pair rates (0.0 for none)."""
    total = 0.0
    for r in rates:
        total = total + r
    return total
