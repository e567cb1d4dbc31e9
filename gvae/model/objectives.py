"""Variational objectives per data point, in nats: the ELBO (SGVB-A and -B) and the IWAE bound."""
from .. import ops
from .gaussian import std_normal_log_prob


def elbo_terms(model, params, x, eps, kl="analytic"):
    """Reconstruction and KL terms of the ELBO with S samples per data point.

    x (B, n), eps (S, B, d) standard normal. Returns ``(rec, kl)``, each of shape (B,):
    rec = mean_s log p(x | z_s); kl = KL(q(z|x) || N(0, I)), in closed form (``"analytic"``, SGVB-B)
    or as mean_s [log q(z_s|x) - log p(z_s)] (``"mc"``, SGVB-A)."""
    if kl not in ("analytic", "mc"):
        raise ValueError(f"unknown KL estimator {kl!r}; expected 'analytic' or 'mc'")
    q, z, rec = reconstruct(model, params, x, eps)
    kl_term = model.family.kl(q) if kl == "analytic" else model.family.kl_mc(q, z)
    return ops.mean(rec, axis=0), kl_term


def reconstruct(model, params, x, eps):
    """Encode x (B, n), draw z = sample(q, eps) for eps (S, B, d), decode: returns ``(q, z, rec)``
    with rec = log p(x | z_s) of shape (S, B)."""
    q = model.encode(params, x)
    z = model.family.sample(q, eps)
    return q, z, model.likelihood.log_prob(model.decode(params, z), x, params)


def elbo(model, params, x, eps, kl="analytic"):
    """The ELBO per data point, shape (B,)."""
    rec, kl_term = elbo_terms(model, params, x, eps, kl)
    return rec - kl_term


def log_weights(model, params, x, eps):
    """Importance log-weights with z_k = sample(q, eps_k): eps (K, B, d) -> ``(rec, log_ratio)``,
    each (K, B): rec = log p(x|z_k), log_ratio = log p(z_k) - log q(z_k|x); log w = rec + log_ratio."""
    q, z, rec = reconstruct(model, params, x, eps)
    return rec, std_normal_log_prob(z) - model.family.log_prob(q, z)


def iwae_bound(model, params, x, eps):
    """L_K = log mean_k w_k per data point, shape (B,), with K = eps.shape[0]."""
    rec, log_ratio = log_weights(model, params, x, eps)
    return ops.log_mean_exp(rec + log_ratio, axis=0)[0]


def training_loss(params, model, x, eps, kl="analytic", kl_weight=1.0, iwae=False):
    """The loss minimised by training and what is reported about it.

    ELBO: -mean_b [rec_b - kl_weight * kl_b]. IWAE (``iwae``, K = eps.shape[0] samples):
    -mean_b log mean_k exp(rec_bk + kl_weight * log_ratio_bk), the annealed bound. ``aux`` is
    (bound at kl_weight 1, mean reconstruction, mean KL or -mean log ratio), batch means."""
    if not iwae:
        rec, kl_term = elbo_terms(model, params, x, eps, kl)
        return ops.mean(kl_term * kl_weight - rec), (ops.mean(rec - kl_term), ops.mean(rec), ops.mean(kl_term))
    rec, log_ratio = log_weights(model, params, x, eps)
    bound, _ = ops.log_mean_exp(rec + log_ratio * kl_weight, axis=0)
    report = bound if kl_weight == 1 else ops.log_mean_exp(ops.value_of(rec + log_ratio), axis=0)[0]
    return -ops.mean(bound), (ops.mean(report), ops.mean(rec), -ops.mean(log_ratio))
