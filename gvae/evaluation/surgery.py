"""ELBO surgery (Hoffman & Johnson, "ELBO surgery: yet another way to carve up the variational evidence
lower bound"): over N data points, the average KL term of the ELBO of a layer whose prior is N(0, I)
splits into

    (1/N) sum_n KL(q(z|x_n) || p(z)) = I_q(n, z) + KL(q(z) || p(z)),

with q(z) = (1/N) sum_n q(z|x_n) the aggregate posterior of the N points and I_q(n, z) = (1/N) sum_n
E_{q(z|x_n)}[log q(z|x_n) - log q(z)] the mutual information between a point's index n (uniform over
the N) and its code z, 0 <= I_q <= log N. The first part is what the code says about which point it came
from; the second how far the codes' distribution as a whole is from the prior.

Estimate: each point's KL in closed form; its share of I_q from S samples z_ns ~ q(z|x_n) with the
exact mixture density log q(z_ns) = logsumexp_m log q(z_ns|x_m) - log N (N S N log-densities of the
family, each linear in d for the banded families), so unbiased for the N points given; its share of the
marginal KL is the difference of the two, and the identity holds for the estimates to rounding. Each
sample's log q(z|x_n) - log q(z) is log N plus the log of point n's responsibility for z, so it is at
most log N, and it varies little both where the codes separate the points (responsibility near 1) and
where they do not (near 1/N).
"""
import numpy as np

from ..kernels import array_module, to_host
from ..model.proposals import mixture_log_prob

SURGERY_MEMORY_MB = 64  # bound on one chunk's tile of samples against every point's posterior
PAIR_COPIES = 4  # (chunk, N, d) arrays a family's log-density holds at once (z - mu and its products)
PAIR_FLOAT64 = 4  # (chunk, N) float64 arrays: the log-densities and the log-sum-exp's shifted copies


def elbo_surgery(family, q, eps, memory_mb=SURGERY_MEMORY_MB):
    """Each point's share of the ELBO surgery of the posteriors ``q`` (the family's parameters of N
    points, batch shape (N,); prior N(0, I)) from the samples z = family.sample(q, eps), eps (S, N, d)
    standard normal. Returns float64 host arrays (N,), in nats, whose means are the surgery's parts:
    ``mean_kl`` (KL(q(z|x_n) || N(0, I)), closed form), ``mutual_information`` (mean over the S samples
    of log q(z|x_n) - log q(z)) and ``marginal_kl`` (their difference). The N x S x N log-densities are
    evaluated a chunk of samples at a time, each chunk's arrays within about ``memory_mb`` MiB."""
    xp = array_module(eps)
    s, n, d = eps.shape
    z = family.sample(q, eps).reshape(s * n, d)  # sample i was drawn from point i % n
    owner = xp.tile(xp.arange(n), s)
    chunk = max(1, memory_mb * 2 ** 20 // (n * (PAIR_COPIES * d * eps.dtype.itemsize + PAIR_FLOAT64 * 8)))
    ratio = xp.empty(s * n, dtype=np.float64)
    for start in range(0, s * n, chunk):
        zc = z[start:start + chunk]
        c = zc.shape[0]
        # log q(z_i | x_m) for every point m: the family's log-density broadcast over the chunk's samples
        log_q = family.log_prob(q, xp.broadcast_to(zc[:, None, :], (c, n, d))).astype(np.float64)
        own = log_q[xp.arange(c), owner[start:start + c]]
        ratio[start:start + c] = own - mixture_log_prob(log_q, axis=1)
    mutual = ratio.reshape(s, n).mean(axis=0)
    kl = family.kl(q).astype(np.float64)
    return {"mean_kl": to_host(kl), "mutual_information": to_host(mutual), "marginal_kl": to_host(kl - mutual)}
