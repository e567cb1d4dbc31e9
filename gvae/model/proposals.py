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


def proposal_terms(model, params, x, qs, eps):
    """The pieces of the weights of samples drawn from each proposal in ``qs`` (family parameters of the
    rows of x (B, n)); eps[i] (S, B, d) standard normal draws z_i = sample(qs[i], eps[i]).

    Returns one dict per proposal i with ``rec`` = log p(x|z_i), ``log_prior`` = log N(z_i; 0, I), each
    (S, B), and ``log_q`` (J, S, B): log q_j(z_i) under every proposal j. Plain arrays (no gradient)."""
    family, out = model.layers[0].family, []
    for q, e in zip(qs, eps):
        z = family.sample(q, e)
        rec = model.likelihood.log_prob(model.decode(params, z), x, params)
        log_q = array_module(rec).stack([family.log_prob(p, z) for p in qs])
        out.append({"rec": rec, "log_prior": std_normal_log_prob(z), "log_q": log_q})
    return out


def mixture_log_prob(log_q, axis=0):
    """log q_mix = log (1/J) sum_j q_j of an equal mixture, from its J components' log-densities
    ``log_q`` along ``axis``: logsumexp_j log q_j - log J, the axis removed."""
    return ops.logsumexp(log_q, axis=axis) - math.log(log_q.shape[axis])


def mixture_log_weights(terms):
    """log w = log p(x|z) + log p(z) - log q_mix(z) for one proposal's samples (a dict of
    :func:`proposal_terms`): shape (S, B)."""
    return terms["rec"] + terms["log_prior"] - mixture_log_prob(terms["log_q"])
