"""Variational objectives per data point, in nats: the ELBO (SGVB-A and -B) and the IWAE bound, for one
stochastic layer or a hierarchy (see :mod:`gvae.model.vae`). Each takes its ``model`` as an
:class:`~gvae.model.interface.ObjectiveModel`: the VAE, or a LocalVAE with free per-point posteriors.

With samples (z_1, ..., z_L) of the posterior pass, p(z_L) = N(0, I) and p(z_l | z_{l+1}) the
conditional priors, the log importance weight is

    log w = log p(x|z_1) + sum_{l<L} log p(z_l|z_{l+1}) + log p(z_L) - sum_l log q(z_l | .),

and the ELBO is E[log w] = E[log p(x|z_1)] - sum_l KL_l, with one KL term per layer,
KL_l = E[log q(z_l | .) - log p(z_l | .)]. Each is estimated by Monte Carlo (``"mc"``, SGVB-A: the
sampled log-ratio) or with what is analytic (``"analytic"``, SGVB-B):

- the top layer: KL(q(z_L | .) || N(0, I)) in closed form (given the sample it is conditioned on);
- a lower layer in top-down inference: KL(q(z_l | z_{l+1}, x) || p(z_l | z_{l+1})) in closed form
  given z_{l+1} (both are conditioned on the same sample; :meth:`Family.kl_diagonal`);
- a lower layer in bottom-up inference: -H(q(z_l | z_{l-1})) in closed form minus log p(z_l | z_{l+1})
  at the sample. Here z_{l+1} is drawn from q(z_{l+1} | z_l), after z_l and depending on it, so the KL
  against p(z_l | z_{l+1}) at that z_{l+1} would not be this term's expectation: only the entropy of
  q(z_l | z_{l-1}), whose integrand does not involve z_{l+1}, may be taken in closed form.
"""
from .. import ops
from .gaussian import std_normal_log_prob

KL_ESTIMATORS = ("analytic", "mc")


def _check_kl(kl):
    if kl not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {kl!r}; expected 'analytic' or 'mc'")


def _sample_mean(term):
    """A per-layer term as (B,): averaged over the samples when it has them (S, B)."""
    return ops.mean(term, axis=0) if term.ndim == 2 else term


def layer_terms(model, params, x, eps, kl="analytic"):
    """The ELBO's terms, layer by layer, with S samples per data point: x (B, n), eps (S, B, noise_size)
    standard normal (``model.noise_size`` = the sum of the layers' sizes).

    Returns ``(rec, kls, qs, zs)``: rec = log p(x | z_1) of shape (S, B); kls, bottom first, each layer's
    KL term (see the module's docstring) averaged over the samples, shape (B,); qs, zs the posterior pass
    (:meth:`VAE.infer`), the samples z_l of shape (S, B, d_l)."""
    _check_kl(kl)
    qs, zs = model.infer(params, x, eps)
    rec = model.likelihood.log_prob(model.likelihood_params(params, zs), x, params)
    priors = model.priors(params, zs)
    kls = []
    for layer, q, z, p in zip(model.layers, qs, zs, priors):
        family = layer.family
        if kl == "mc":
            log_q = family.log_prob(q, z)
            term = log_q - (std_normal_log_prob(z) if p is None else model.conditional.log_prob(p, z))
        elif p is None:
            term = family.kl(q)
        elif model.inference == "top-down":
            term = family.kl_diagonal(q, p)
        else:
            term = -family.entropy(q) - model.conditional.log_prob(p, z)
        kls.append(_sample_mean(term))
    return rec, kls, qs, zs


def _total(terms):
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def elbo_terms(model, params, x, eps, kl="analytic"):
    """Reconstruction and KL terms of the ELBO with S samples per data point.

    x (B, n), eps (S, B, noise_size) standard normal. Returns ``(rec, kl)``, each of shape (B,):
    rec = mean_s log p(x | z_1,s); kl = the sum of the layers' KL terms (:func:`layer_terms`): for one
    layer KL(q(z|x) || N(0, I)), in closed form (``"analytic"``, SGVB-B) or as
    mean_s [log q(z_s|x) - log p(z_s)] (``"mc"``, SGVB-A)."""
    rec, kls, _, _ = layer_terms(model, params, x, eps, kl)
    return ops.mean(rec, axis=0), _total(kls)


def elbo(model, params, x, eps, kl="analytic"):
    """The ELBO per data point, shape (B,)."""
    rec, kl_term = elbo_terms(model, params, x, eps, kl)
    return rec - kl_term


def layer_log_ratios(model, params, qs, zs):
    """log p(z_l | .) - log q(z_l | .) of each layer at a pass's samples, a list bottom first of (S, B):
    the top layer's against N(0, I), the others' against p(z_l | z_{l+1})."""
    out = []
    for layer, q, z, p in zip(model.layers, qs, zs, model.priors(params, zs)):
        log_p = std_normal_log_prob(z) if p is None else model.conditional.log_prob(p, z)
        out.append(log_p - layer.family.log_prob(q, z))
    return out


def log_weights(model, params, x, eps):
    """Importance log-weights with z_k from the posterior pass on eps (K, B, noise_size) -> ``(rec,
    log_ratio)``, each (K, B): rec = log p(x|z_1,k), log_ratio = log p(z_k) - log q(z_k|x) over all
    layers (the top layer's first); log w = rec + log_ratio."""
    qs, zs = model.infer(params, x, eps)
    rec = model.likelihood.log_prob(model.likelihood_params(params, zs), x, params)
    return rec, log_ratio(model, params, qs, zs)


def log_ratio(model, params, qs, zs):
    """log p(z) - log q(z|x) of a pass's samples over all layers, summed top layer first, (S, B)."""
    return _total(layer_log_ratios(model, params, qs, zs)[::-1])


def iwae_bound(model, params, x, eps):
    """L_K = log mean_k w_k per data point, shape (B,), with K = eps.shape[0]."""
    rec, log_ratio = log_weights(model, params, x, eps)
    return ops.log_mean_exp(rec + log_ratio, axis=0)[0]


def training_loss(params, model, x, eps, kl="analytic", kl_weight=1.0, iwae=False, target_rate=None, mmd=None):
    """The loss minimised by training and what is reported about it.

    ELBO: D + kl_weight R with D = -mean_b rec_b (the distortion) and R = mean_b kl_b (the rate): the
    ELBO at weight 1, the beta-VAE's loss at beta, warm-up below 1. With ``target_rate`` S: D + |S - R|,
    the rate held near S (Alemi et al., "Fixing a broken ELBO"). With ``mmd`` = (W, y, kernel): plus
    W MMD^2(z, y), z the samples of the top layer (S B, d) and y as many draws of its prior N(0, I): the
    InfoVAE objective of Zhao et al. with alpha = 1 - kl_weight and lambda = W - alpha + 1. IWAE
    (``iwae``, K = eps.shape[0] samples): -mean_b log mean_k exp(rec_bk + kl_weight * log_ratio_bk), the annealed bound (the weight
    applies to every layer's latent terms). ``aux`` is (bound at kl_weight 1, mean reconstruction, mean
    KL or -mean log ratio), batch means."""
    if not iwae:
        if mmd is None:
            rec, kl_term = elbo_terms(model, params, x, eps, kl)
        else:
            rec, kls, _, zs = layer_terms(model, params, x, eps, kl)
            rec, kl_term = ops.mean(rec, axis=0), _total(kls)
        rate = ops.mean(kl_term)
        if target_rate is None:
            loss = ops.mean(kl_term * kl_weight - rec)
        else:
            loss = ops.absolute(target_rate - rate) - ops.mean(rec)
        if mmd is not None:
            weight, y, kernel = mmd
            top = zs[-1]
            loss = loss + weight * ops.mmd(ops.reshape(top, (-1, top.shape[-1])), y, kernel)
        return loss, (ops.mean(rec - kl_term), ops.mean(rec), rate)
    rec, log_ratio = log_weights(model, params, x, eps)
    bound, _ = ops.log_mean_exp(rec + log_ratio * kl_weight, axis=0)
    report = bound if kl_weight == 1 else ops.log_mean_exp(ops.value_of(rec + log_ratio), axis=0)[0]
    return -ops.mean(bound), (ops.mean(report), ops.mean(rec), -ops.mean(log_ratio))
