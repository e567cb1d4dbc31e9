"""The total-correlation (CorEx) autoencoder (Gao, Brekelmans, Ver Steeg, Galstyan, "Auto-encoding total
correlation explanation", 2019), as the survey writes it.

CorEx maximises TC(x; z) - TC(z) = sum_i I(x_i; z) - sum_j H(z_j) + H(z|x), the correlation among the pixels
that the code explains minus the code's own. With a decoder that factorises over the pixels, I(x_i; z) >=
H(x_i) + E log p(x_i|z), and -H(z_j) >= E log r(z_j); with r(z_j) = N(0, 1) the bound to maximise is, per
image,

    L(x) = E_q [log p(x|z)] - sum_j w_j KL(q(z_j|x) || N(0, 1)) - TC(q(z|x)),
    TC(q(z|x)) = KL(q || N(0, I)) - sum_j KL(q_j || N(0, 1)) = 1/2 (sum_j log Sigma_jj - log det Sigma) >= 0,

where q(z_j|x) = N(mu_j, Sigma_jj) is the j-th marginal of q(z|x) and w_j = 1: the ELBO, for any q. The
survey's last step (sum_j I(z_j; x) in place of sum_j H(z_j) - H(z|x)) holds for a factorised q only: with a
correlated q it drops TC(q(z|x)), and training then moves the code's information into the correlations
(docs/models/corex.md measures it), so the posterior's TC is charged here. The anchored variant (AnchorVAE) adds
lambda I(z_k; x) for the anchored units k, I(z_k; x) taken as E KL(q(z_k|x) || N(0, 1)) as the survey's
step takes it, which gives those units the weight w_k = 1 - lambda (0 <= lambda <= 1: lambda > 1 would
reward an unbounded rate); the objective then lies above the ELBO by lambda times the anchors' KL terms.
"""
import numpy as np

from ... import ops
from ...model.objectives import _check_kl

MOST_ANCHOR_WEIGHT = 1.0


def marginal_kls(family, q):
    """KL(q(z_j|x) || N(0, 1)) of every marginal of q, (B, d): 1/2 (mu_j^2 + Sigma_jj - 1 - log Sigma_jj),
    with Sigma_jj from the family's marginal variances (a band solve for the banded families)."""
    v = family.variance(q)
    return 0.5 * (q.mu * q.mu + v - 1.0 - ops.log(v))


def unit_weights(d, anchors=(), anchor_weight=0.0, dtype=np.float64):
    """The weights w (d,) of the marginal KL terms: 1, and 1 - ``anchor_weight`` at the ``anchors`` (unit
    indices in 0..d-1). ValueError for an index outside the code or repeated, or a weight outside [0, 1]."""
    anchors = [int(k) for k in anchors]
    bad = [k for k in anchors if not 0 <= k < d]
    if bad or len(set(anchors)) != len(anchors):
        raise ValueError(f"anchors must be distinct unit indices in 0..{d - 1}, got {anchors}")
    if not 0.0 <= anchor_weight <= MOST_ANCHOR_WEIGHT:
        raise ValueError(f"the anchor weight lambda must lie in [0, {MOST_ANCHOR_WEIGHT:g}], got {anchor_weight}")
    w = np.ones(d, dtype=dtype)
    w[anchors] = 1.0 - anchor_weight
    return w


def corex_parts(model, params, x, eps):
    """The pieces of CorEx's bound per image for a one-layer VAE ``model``: x (B, n), eps (S, B, d).
    Returns ``(rec, kls, kl)``: rec (B,) = mean_s log p(x|z_s), kls (B, d) the marginals' KL terms
    (:func:`marginal_kls`), kl (B,) = KL(q(z|x) || N(0, I)), the ELBO's."""
    if len(model.layers) != 1:
        raise ValueError(f"the CorEx bound here is for one stochastic layer, got {len(model.layers)}")
    qs, zs = model.infer(params, x, eps)
    family, q = model.layers[0].family, qs[0]
    rec = ops.mean(model.likelihood.log_prob(model.likelihood_params(params, zs), x, params), axis=0)
    return rec, marginal_kls(family, q), family.kl(q)


def corex_terms(model, params, x, eps, weights):
    """CorEx's terms per image (:func:`corex_parts`), ``weights`` (d,) an array of the model's dtype on x's
    device. Returns ``(rec, rate, kl, tc)``, each (B,): rec, rate = sum_j w_j KL(q(z_j|x) || N(0, 1)) + tc,
    kl = KL(q(z|x) || N(0, I)), tc = TC(q(z|x)) = kl - sum_j KL(q_j || N(0, 1)) (zero for a diagonal q)."""
    rec, kls, kl = corex_parts(model, params, x, eps)
    tc = kl - ops.sum(kls, axis=-1)
    return rec, ops.sum(kls * weights, axis=-1) + tc, kl, tc


def corex_loss(params, model, x, eps, weights, kl="analytic", kl_weight=1.0):
    """The loss minimised by training, mean_b [kl_weight rate_b - rec_b] (:func:`corex_terms`; kl_weight is
    the trainer's warm-up or beta), and ``aux`` = (CorEx's bound at weight 1, the ELBO, mean rec, mean
    rate, mean TC of q), batch means. The marginal KL terms are closed form: ``kl`` must be "analytic"."""
    _check_kl(kl)
    if kl != "analytic":
        raise ValueError("the CorEx bound takes each marginal's KL in closed form: use kl='analytic'")
    rec, rate, kl_term, tc = (ops.mean(t) for t in corex_terms(model, params, x, eps, weights))
    return kl_weight * rate - rec, (rec - rate, rec - kl_term, rec, rate, tc)
