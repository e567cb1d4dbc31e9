"""Variational objectives, per data point, in nats."""
from . import ops


def elbo_terms(model, params, x, eps, kl="analytic"):
    """Reconstruction and KL terms of the ELBO with S samples per data point.

    x (B, n), eps (S, B, d) standard normal. Returns ``(rec, kl)``, each of shape (B,):
    rec = mean_s log p(x | z_s); kl = KL(q(z|x) || N(0, I)), in closed form (``"analytic"``, SGVB-B)
    or as mean_s [log q(z_s|x) - log p(z_s)] (``"mc"``, SGVB-A)."""
    family = model.family
    q = model.encode(params, x)
    z = family.sample(q, eps)
    rec = ops.mean(model.likelihood.log_prob(model.decode(params, z), x), axis=0)
    if kl == "analytic":
        kl_term = family.kl(q)
    elif kl == "mc":
        kl_term = family.kl_mc(q, z)
    else:
        raise ValueError(f"unknown KL estimator {kl!r}; expected 'analytic' or 'mc'")
    return rec, kl_term


def elbo(model, params, x, eps, kl="analytic"):
    """The ELBO per data point, shape (B,)."""
    rec, kl_term = elbo_terms(model, params, x, eps, kl)
    return rec - kl_term


def negative_elbo_loss(params, model, x, eps, kl="analytic", kl_weight=1.0):
    """Training loss: -mean_b [rec_b - kl_weight * kl_b]; aux = (mean rec, mean kl) as plain floats."""
    rec, kl_term = elbo_terms(model, params, x, eps, kl)
    loss = ops.mean(kl_term * kl_weight - rec)
    return loss, (ops.mean(rec), ops.mean(kl_term))
