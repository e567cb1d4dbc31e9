"""Importance sampling of log p(x) from several proposals at once: their equal (deterministic) mixture.

J proposals q_1 .. q_J of the same data point each draw S samples z_js = sample(q_j, eps_js). With
q_mix = (1/J) sum_j q_j (the balance heuristic of multiple importance sampling: Veach & Guibas,
"Optimally Combining Sampling Techniques for Monte Carlo Rendering"),

    w_js = p(x, z_js) / q_mix(z_js),   p^(x) = 1/(J S) sum_js w_js,

p^(x) is unbiased for p(x) (sum_j 1/J E_{q_j}[p / q_mix] = integral of p(x, z)), so log p^(x) is a
stochastic lower bound on log p(x), as the IWAE bound L_K is. As q_mix >= q_j / J for every j, each weight
is at most J times the weight under the best proposal: the mixture is never much worse than the better of
its components, and no choice between noisy estimates (whose maximum would be biased upward) is made.
"""
import math

from .. import ops
from ..kernels import array_module
from .gaussian import std_normal_log_prob


def proposal_terms(model, params, proposals, x, eps):
    """The pieces of the weights of samples drawn from each proposal: ``proposals`` a list of (posterior,
    its parameters), each posterior a model with ``infer(params, x, eps)`` and ``log_q(params, x, zs)``
    (the VAE itself for its amortised q, a :class:`gvae.model.local.LocalVAE` for free heads); eps[i]
    (S, B, noise_size) standard normal draws for proposal i. ``model``/``params``: the generative model.

    Returns one dict per proposal i with ``rec`` = log p(x|z_i), ``log_prior`` = log p(z_i) (every layer:
    N(0, I) at the top, p(z_l | z_{l+1}) below), each (S, B), ``log_q`` (J, S, B): log q_j(z_i) under
    every proposal j, and ``qs``: proposal i's own pass. Plain arrays (no gradient)."""
    out = []
    for (posterior, own), e in zip(proposals, eps):
        qs, zs = posterior.infer(own, x, e)
        rec = model.likelihood.log_prob(model.likelihood_params(params, zs), x, params)
        log_prior = None
        for z, p in zip(zs, model.priors(params, zs)):
            term = std_normal_log_prob(z) if p is None else model.conditional.log_prob(p, z)
            log_prior = term if log_prior is None else log_prior + term
        log_q = array_module(rec).stack([q.log_q(o, x, zs) for q, o in proposals])
        out.append({"rec": rec, "log_prior": log_prior, "log_q": log_q, "qs": qs})
    return out


def mixture_log_prob(log_q, axis=0):
    """log q_mix = log (1/J) sum_j q_j of an equal mixture, from its J components' log-densities
    ``log_q`` along ``axis``: logsumexp_j log q_j - log J, the axis removed."""
    return ops.logsumexp(log_q, axis=axis) - math.log(log_q.shape[axis])


def mixture_log_weights(terms):
    """log w = log p(x|z) + log p(z) - log q_mix(z) for one proposal's samples (a dict of
    :func:`proposal_terms`): shape (S, B)."""
    return terms["rec"] + terms["log_prior"] - mixture_log_prob(terms["log_q"])
