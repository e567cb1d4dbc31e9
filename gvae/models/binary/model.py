"""A VAE with one layer of binary latent units, the stochastic layer of a sigmoid belief network, trained by
score-function gradients: the multi-sample bound with VIMCO's leave-one-out learning signals (Mnih and
Rezende, "Variational Inference for Monte Carlo Objectives", 2016).

    q(z|x) = prod_i Bernoulli(z_i; sigmoid(enc(x)_i)),  p(z) = prod_i Bernoulli(z_i; sigmoid(a_i)) (a learned),
    p(x|z) = prod_j Bernoulli(x_j; sigmoid(dec(z)_j)).

The bound is L_K = log (1/K) sum_k w_k, w_k = p(x, z_k) / q(z_k|x), z_1..z_K drawn from q. z is discrete,
so its gradient in the encoder is the score function's; VIMCO gives each sample the learning signal
L_K - L_K^{-k}, where L_K^{-k} replaces log w_k by the mean of the other samples' log-weights (their
geometric mean), a baseline independent of z_k that leaves the estimator unbiased:

    grad L_K = sum_k (L_K - L_K^{-k}) grad log q(z_k|x) + sum_k w~_k grad log w_k,   w~ = softmax(log w).

:func:`vimco_loss` is the surrogate whose gradient this is (the signals enter as constants, the samples are
drawn outside the tape from uniforms u: z = [u < sigmoid(enc(x))]). With one sample, :func:`nvil_loss` is
the score function of the ELBO with NVIL's input-dependent baseline (Mnih and Gregor, "Neural Variational
Inference and Learning in Belief Networks", 2014): the signal log w - b(x), b a network of its own (``base.*``)
fitted to log w by least squares; NVIL's running variance normalisation is left out (it rescales each
step by the samples' spread, which biases a single step). :func:`taylor_loss` is DARN's estimator: each unit's
signal the first-order Taylor term of log w in that unit (Gregor et al., "Deep AutoRegressive Networks",
2014), biased, with nothing to fit. Parameters: ``enc.*``, ``dec.*``, ``base.*`` (with
the baseline), ``prior.a``, DARN's ``enc.ar`` and ``prior.ar`` (autoregressive), then the likelihood's.
"""
import numpy as np

from ... import kernels, ops
from ...autodiff import value_and_grad
from ...kernels import array_module
from ...model.constants import units_before
from ...model.layers import MLP
from ...model.likelihoods import bernoulli_draw
from ...model.params import NetworkModel, layered_prior_text

PRIOR = "prior.a"
ENCODER_AR, PRIOR_AR = "enc.ar", "prior.ar"  # DARN's autoregressive weights (strictly lower triangles read)


class BinaryVAE(NetworkModel):
    """``latent`` binary units over ``n_in`` observed ones: networks of widths ``hidden`` and ``activation``
    (the encoder's output the units' logits), the likelihood ``likelihood`` (``likelihood_options``), a
    learned factorised Bernoulli prior; parameters of ``dtype`` initialised by ``init`` (the prior's logits
    at 0: every unit on with probability 1/2); with ``baseline``, NVIL's baseline network x -> b(x). With
    ``autoregressive`` (DARN, Gregor et al. 2014), the encoder's and the prior's unit i also read the units
    j < i: logit_i = bias_i + sum_{j<i} W_ij z_j, W the weights ``enc.ar`` and ``prior.ar`` (d, d; their
    strictly lower triangles; zero at first, the factorised layer). A pass's noise is uniform on [0, 1),
    (K, B, latent)."""

    def __init__(self, n_in, latent, hidden, activation="elu", likelihood="bernoulli", dtype=np.float32,
                 likelihood_options=None, init="uniform", baseline=False, autoregressive=False):
        super().__init__(n_in, latent, hidden, activation, likelihood, dtype, likelihood_options, init)
        self.autoregressive = bool(autoregressive)
        # the units before each unit, for DARN's masked products
        self.mask = units_before(self.size) if self.autoregressive else None
        self.encoder = MLP([self.n_in, *self.hidden, self.size], activation, "enc.")
        self.decoder = MLP([self.size, *self.hidden[::-1], self.likelihood.output_size()], activation, "dec.")
        self.baseline = MLP([self.n_in, *self.hidden, 1], activation, "base.") if baseline else None
        self.noise_size = self.size

    @property
    def prior_text(self):
        """What a prior draw is, in words (a picture's title)."""
        return layered_prior_text("autoregressive binary" if self.autoregressive else "binary", (self.size,))

    def networks(self):
        """The encoder, the decoder and, with NVIL's baseline, its network."""
        return [self.encoder, self.decoder] + ([self.baseline] if self.baseline is not None else [])

    def param_shapes(self):
        ar = {ENCODER_AR: (self.size, self.size), PRIOR_AR: (self.size, self.size)} if self.autoregressive else {}
        return {**super().param_shapes(), PRIOR: (self.size,), **ar}

    def masked_weights(self):
        """The weights a pass multiplies by a mask of their shape: DARN's autoregressive ones."""
        return (ENCODER_AR, PRIOR_AR) if self.autoregressive else ()

    def log_weights(self, params, x, u):
        """:func:`log_weights` of this model (what the score-function losses call, so that another model of
        binary units with this method trains with them)."""
        return log_weights(self, params, x, u)

    def ar_logits(self, params, name, bias, z):
        """The logits bias + z (W o mask)^T of the layer ``name`` (ENCODER_AR or PRIOR_AR) at the codes z
        (..., d): one masked product (z a constant); ``bias`` unchanged without autoregression."""
        if not self.autoregressive:
            return bias
        d = self.size
        weights = ops.multiply(params[name], self.mask.like(params[name]))
        return bias + ops.reshape(ops.matmul(ops.reshape(z, (-1, d)), ops.transpose(weights)), z.shape)

    def draw(self, params, bias, u):
        """(z, encoder logits, prior logits): the codes z (K, B, latent) drawn from q(z|x) with the uniforms u,
        ``bias`` the encoder's output for x (B, latent) (autoregressively with DARN's weights), and the logits
        that score them."""
        if self.autoregressive:
            z = kernels.ar_bernoulli_draw(kernels.contiguous(kernels.broadcast_to(ops.value_of(bias), u.shape)),
                                          ops.value_of(params[ENCODER_AR]), u)
        else:
            z = bernoulli_draw(bias, u)
        prior = ops.broadcast_to(params[PRIOR], z.shape)
        return z, self.ar_logits(params, ENCODER_AR, ops.broadcast_to(bias, z.shape), z), \
            self.ar_logits(params, PRIOR_AR, prior, z)

    def prior_sample(self, params, u):
        """[z]: codes (..., latent) drawn from the prior with the uniforms u (..., latent), z_i = [u_i <
        sigmoid(a_i)] (with DARN's weights unit by unit, a_i + sum_{j<i} P_ij z_j): what ``gvae sample``
        decodes (constants, outside any tape)."""
        bias = kernels.contiguous(kernels.broadcast_to(ops.value_of(params[PRIOR]), u.shape))
        if self.autoregressive:
            return [kernels.ar_bernoulli_draw(bias, ops.value_of(params[PRIOR_AR]), kernels.contiguous(u))]
        return [bernoulli_draw(bias, u)]

    def taylor_terms(self, params, x, u):
        """What :func:`taylor_loss` reads: ([z], [log q(z_j | z_<j, x) per unit], log p(z), log p(x|z),
        log_w_at), z (K, B, latent) drawn from q with the uniforms u; ``log_w_at(plain, (z,))`` is the sum of
        log w at a continuous z (the encoder's output a constant)."""
        bias = self.encoder(params, x)
        z, q_logits, prior_logits = self.draw(params, bias, u)
        per_unit = z * q_logits - ops.softplus(q_logits)
        log_prior = ops.bernoulli_loglik(prior_logits, z)
        rec = self.likelihood.log_prob(self.decoder(params, z), x, params)
        fixed = ops.value_of(bias)

        def log_w_at(plain, zs):
            (zz,) = zs
            q = self.ar_logits(plain, ENCODER_AR, fixed, zz)
            p = self.ar_logits(plain, PRIOR_AR, plain[PRIOR], zz)
            rec = self.likelihood.log_prob(self.decoder(plain, zz), x, plain)
            return ops.sum(rec) + ops.sum(zz * (p - q) - ops.softplus(p) + ops.softplus(q))
        return [z], [per_unit], log_prior, rec, log_w_at


def log_weights(model, params, x, u):
    """The samples' log-weights for x (B, n_in) and uniforms u (K, B, latent): ``(rec, log_ratio, log_q)``,
    each (K, B): log p(x|z_k), log p(z_k) - log q(z_k|x) and log q(z_k|x), with z_k drawn from q(z|x) by
    :meth:`BinaryVAE.draw` from the encoder's output (constants of the tape; log q differentiable in the encoder, log p(z) in the
    prior's logits, with DARN's weights in both)."""
    z, q_logits, prior_logits = model.draw(params, model.encoder(params, x), u)
    log_q = ops.bernoulli_loglik(q_logits, z)
    log_prior = ops.bernoulli_loglik(prior_logits, z)
    rec = model.likelihood.log_prob(model.decoder(params, z), x, params)
    return rec, log_prior - log_q, log_q


def leave_one_out_signals(log_w):
    """VIMCO's learning signals L_K - L_K^{-k} (K, B) from the log-weights' values (K, B), K >= 2:
    L_K^{-k} is the bound with log w_k replaced by the mean of the other K - 1 log-weights."""
    k = log_w.shape[0]
    if k < 2:
        raise ValueError(f"VIMCO's leave-one-out baseline needs 2 or more samples per point, got {k}")
    # Kernels throughout (copies, not a select), so that a recorded step computes the signals anew. The
    # others' mean is summed over the others alone (not the total less log w_k, which is NaN where a log-weight
    # is -inf: a sample the likelihood rules out still has a finite baseline).
    xp = array_module(log_w)
    apart = xp.empty((k - 1,) + log_w.shape, log_w.dtype)  # apart[:, j]: every log-weight but the j-th
    for j in range(k):
        if j:
            kernels.copy_into(log_w[:j], apart[:j, j])
        if j < k - 1:
            kernels.copy_into(log_w[j + 1:], apart[j:, j])
    others = kernels.binary("divide", kernels.sum_axes(apart, 0), k - 1)
    replaced = kernels.copy_into(log_w, xp.empty((k,) + log_w.shape, log_w.dtype))  # (K, K, B)
    for j in range(k):
        kernels.copy_into(others[j], replaced[j, j])
    bound = kernels.log_mean_exp(log_w, axis=0)[0]
    return kernels.binary("subtract", bound, kernels.log_mean_exp(replaced, axis=1)[0])


def plain_signals(log_w):
    """The score function without a baseline: every sample's signal is L_K itself (unbiased; the reference
    the baselines' variance is measured against)."""
    bound = kernels.log_mean_exp(log_w, axis=0)[0]
    return kernels.broadcast_to(bound, log_w.shape)


SIGNALS = {"vimco": leave_one_out_signals, "plain": plain_signals}


def score_loss(params, model, x, u, signals=leave_one_out_signals):
    """The loss minimised by training, -mean_b [L_K + sum_k signal_k log q(z_k|x)], the learning signals
    ``signals(log_w)`` (K, B) constants, whose gradient is minus the score-function estimate of grad L_K;
    ``aux`` = (mean L_K, mean rec, mean -log_ratio), batch means. u (K, B, latent) uniform (VIMCO's signals
    need K >= 2)."""
    rec, log_ratio, log_q = model.log_weights(params, x, u)
    log_w = rec + log_ratio
    bound, _ = ops.log_mean_exp(log_w, axis=0)
    surrogate = bound + ops.sum(signals(ops.value_of(log_w)) * log_q, axis=0)
    return -ops.mean(surrogate), (ops.mean(bound), ops.mean(ops.mean(rec, axis=0)), -ops.mean(ops.mean(log_ratio, axis=0)))


def vimco_loss(params, model, x, u):
    """:func:`score_loss` with VIMCO's leave-one-out signals: what ``--task sbn`` trains."""
    return score_loss(params, model, x, u, leave_one_out_signals)


def nvil_loss(params, model, x, u):
    """One sample a point (u (1, B, latent)): -mean_b [log w + (log w - b(x)) log q(z|x)] (the signal a
    constant) plus the baseline's least squares mean_b (log w - b(x))^2 (log w a constant): minus NVIL's
    estimate of the ELBO's gradient, and the baseline's regression. ``aux`` = (mean ELBO, mean rec, mean
    -log_ratio), batch means."""
    if u.shape[0] != 1 or model.baseline is None:
        raise ValueError("NVIL takes one sample a point and a model with its baseline network "
                         f"(got {u.shape[0]} samples, baseline {'present' if model.baseline else 'absent'})")
    rec, log_ratio, log_q = model.log_weights(params, x, u)
    log_w = rec[0] + log_ratio[0]
    b = model.baseline(params, x)[..., 0]
    target = ops.value_of(log_w)
    signal = ops.subtract(target, ops.value_of(b))  # (plain arrays, through the kernels: a recorded step holds it)
    residual = target - b
    loss = -ops.mean(log_w + signal * log_q[0]) + ops.mean(residual * residual)
    return loss, (ops.mean(log_w), ops.mean(rec[0]), -ops.mean(log_ratio[0]))


def taylor_signals(params, zs, log_w_at):
    """DARN's per-unit learning signals (Gregor et al., "Deep AutoRegressive Networks", 2014; the survey's
    slide): the first-order Taylor term (d log w / d z_j)(z_j - 1/2) of log w = log p(x, z) - log q(z|x)
    differentiated in z as if it were continuous, at the samples ``zs`` (one array (K, B, units) per layer),
    the parameters' values; ``log_w_at(plain, zs)`` is the sum of log w over the samples at continuous codes
    (``plain`` the parameters' values), as a model's :meth:`taylor_terms` gives it. One array per layer."""
    plain = {k: ops.value_of(v) for k, v in params.items()}
    _, d_log_w = value_and_grad(lambda *zz: log_w_at(plain, zz), argnums=tuple(range(len(zs))))(*zs)
    return [kernels.binary("multiply", d, kernels.binary("subtract", z, 0.5)) for d, z in zip(d_log_w, zs)]


def taylor_loss(params, model, x, u):
    """One sample a point (u (1, B, units)): -mean_b [log w + sum_j s_j log q(z_j|z_<j, x)] with DARN's
    signals s_j (:func:`taylor_signals`, constants): minus DARN's estimate of the ELBO's gradient, which
    replaces the score function's signal log w by each unit's Taylor term, no baseline to fit, biased (the
    term it subtracts is not independent of z). The model gives its terms by ``taylor_terms(params, x, u)``
    -> (codes per layer, log q per unit per layer, log p(z), log p(x|z), log_w_at). ``aux`` = (mean ELBO,
    mean rec, mean -log_ratio), batch means."""
    if u.shape[0] != 1:
        raise ValueError(f"DARN's Taylor estimator takes one sample a point, got {u.shape[0]}")
    zs, per_unit, log_prior, rec, log_w_at = model.taylor_terms(params, x, u)
    log_q = ops.sum(per_unit[0], axis=-1)
    for more in per_unit[1:]:
        log_q = log_q + ops.sum(more, axis=-1)
    log_w = rec[0] + log_prior[0] - log_q[0]
    signals = taylor_signals(params, zs, log_w_at)
    score = ops.sum(signals[0] * per_unit[0], axis=-1)
    for s_l, unit_l in zip(signals[1:], per_unit[1:]):
        score = score + ops.sum(s_l * unit_l, axis=-1)
    loss = -ops.mean(log_w + score[0])
    return loss, (ops.mean(log_w), ops.mean(rec[0]), -ops.mean(log_prior[0] - log_q[0]))


ESTIMATORS = {"vimco": vimco_loss, "nvil": nvil_loss, "taylor": taylor_loss}


def binary_loss(params, model, x, u, estimator="vimco"):
    """The loss of the score-function ``estimator`` (a name of :data:`ESTIMATORS`)."""
    return ESTIMATORS[estimator](params, model, x, u)
