"""The inference gaps of a VAE on a sample of data points (Cremer, Li & Duvenaud, "Inference
Suboptimality in Variational Autoencoders", table 1), per point, in nats:

    log p(x) - ELBO(q_amortised) = [log p(x) - ELBO(q*)] + [ELBO(q*) - ELBO(q_amortised)]
           inference gap         =   approximation gap   +      amortisation gap

q_amortised is the encoder's q(z|x); q* the q of the same family refined for x alone with the decoder
fixed (:mod:`gvae.evaluation.refine`). The approximation gap is what the family cannot express of the true
posterior; the amortisation gap what the encoder loses by sharing one network over all data points.

In a hierarchy q* is the product of every layer's q refined (:mod:`gvae.model.local`): the layers
independent given x, where the encoder's q conditions each on its neighbour's sample; so the amortisation
gap there also carries what that independence costs or gains, and may be negative.

Estimates, from one pass of ``iw_samples`` = K reparameterised samples from each of the two posteriors:
ELBO(q) = mean of log p(x|z) over q's own K samples minus KL(q || N(0, I)) in closed form (in a hierarchy
minus the mean over the same samples of log q(z) - log p(z)); log p(x) =
the importance-sampled estimate with the equal mixture of q_amortised and q* as proposal, 2K samples
(:mod:`gvae.model.proposals`: a stochastic lower bound, as the IWAE bound L_K is, never much worse than the
better of the two proposals). The IWAE bounds L_K of each proposal alone come from the same samples and
are reported beside it.
"""
import numpy as np

from .. import kernels
from ..kernels import array_module, to_host
from ..model.local import LocalVAE, encoder_heads, with_heads
from ..model.proposals import mixture_log_weights, proposal_terms
from .evaluate import sample_chunk
from ..training.progress import progress_bar
from .refine import RefineOptions, refine_heads

POSTERIORS = ("amortised", "refined")  # the two proposals, in this order
GAPS = {"approximation_gap": ("log_likelihood", "elbo_refined"),
        "amortisation_gap": ("elbo_refined", "elbo_amortised"),
        "inference_gap": ("log_likelihood", "elbo_amortised")}


def posterior_estimates(model, params, x, refined, rng, iw_samples, chunk):
    """Estimates for the points x (B, n) under each posterior of :data:`POSTERIORS`: the model's amortised
    q, and the local q of the ``refined`` heads (B, total head size; :class:`LocalVAE`), from
    ``iw_samples`` = K samples of each, drawn ``chunk`` at a time. Returns float64 arrays (B,) on x's
    device, in nats of the data: ``log_likelihood`` (the mixture estimate from all samples) and, per
    posterior NAME, ``log_likelihood_NAME`` (L_K with that proposal alone), ``elbo_NAME``, ``rate_NAME``
    (its KL term: in closed form for one layer, else the mean over its samples of log q - log p(z)) and
    ``distortion_NAME`` (minus its reconstruction term)."""
    xp = array_module(x)
    proposals = [(model, params), (LocalVAE(model), with_heads(params, refined))]
    b, k, one_layer = x.shape[0], iw_samples, len(model.layers) == 1
    own = xp.empty((len(proposals), k, b), dtype=np.float64)
    mix = xp.empty((len(proposals), k, b), dtype=np.float64)
    rec = xp.zeros((len(proposals), b), dtype=np.float64)
    log_ratio = xp.zeros((len(proposals), b), dtype=np.float64)
    qs = [None] * len(proposals)
    for s in range(0, k, chunk):
        c = min(chunk, k - s)
        eps = [rng.standard_normal((c, b, model.noise_size), dtype=model.dtype) for _ in proposals]
        for j, terms in enumerate(proposal_terms(model, params, proposals, x, eps)):
            own[j, s:s + c] = terms["rec"] + terms["log_prior"] - terms["log_q"][j]
            mix[j, s:s + c] = mixture_log_weights(terms)
            rec[j] += terms["rec"].sum(axis=0)
            log_ratio[j] += (terms["log_q"][j] - terms["log_prior"]).sum(axis=0)
            qs[j] = terms["qs"]
    offset = model.likelihood.nats_offset()
    out = {"log_likelihood": kernels.log_mean_exp(mix.reshape(-1, b), axis=0)[0] + offset}
    for j, name in enumerate(POSTERIORS):
        kl = model.layers[0].family.kl(qs[j][0]).astype(np.float64) if one_layer else log_ratio[j] / k
        distortion = -(rec[j] / k + offset)
        out[f"log_likelihood_{name}"] = kernels.log_mean_exp(own[j], axis=0)[0] + offset
        out[f"rate_{name}"] = kl
        out[f"distortion_{name}"] = distortion
        out[f"elbo_{name}"] = -(distortion + kl)
    return out


def inference_gaps(model, params, x, rng, iw_samples=1000, options=RefineOptions(), batch_size=100,
                   memory_mb=256, progress=False):
    """The inference gaps of every row of x (N, n), refined ``batch_size`` points at a time.

    ``rng``: a generator of x's device (the refinement's and the estimates' noise). Returns ``(per,
    refinements)``: ``per`` a dict of float64 host arrays (N,) with the estimates of
    :func:`posterior_estimates` and the three gaps of :data:`GAPS`; ``refinements`` the info dict of
    :func:`refine_heads` for each batch."""
    if not (isinstance(iw_samples, (int, np.integer)) and iw_samples >= 1):
        raise ValueError(f"the number of importance samples must be an integer >= 1, got {iw_samples!r}")
    if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise ValueError(f"the batch size must be an integer >= 1, got {batch_size!r}")
    n = x.shape[0]
    if n < 1:
        raise ValueError("inference_gaps: no data points given")
    parts = []
    refinements = []
    n_batches = -(-n // batch_size)
    bar = progress_bar(progress, n_batches * options.max_steps, f"refining q for {n} points", unit="step")
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size]
        amortised = array_module(xb).ascontiguousarray(encoder_heads(model, params, xb))
        chunk = min(options.eval_samples, sample_chunk(model, len(xb), memory_mb * 2 ** 20))
        refined, info = refine_heads(model, params, xb, amortised, rng, options, chunk=chunk, bar=bar)
        # The bar's total is the most steps still possible: a refinement that stopped at a plateau takes
        # its unused steps off the total instead of counting steps that never ran.
        bar.total -= options.max_steps - info["steps"]
        bar.refresh()
        refinements.append(info)
        chunk = min(iw_samples, sample_chunk(model, len(xb), memory_mb * 2 ** 20))
        parts.append(posterior_estimates(model, params, xb, refined, rng, iw_samples, chunk))
    bar.close()
    xp = array_module(x)
    per = {key: to_host(xp.concatenate([p[key] for p in parts])) for key in parts[0]}  # one read per key
    for gap, (high, low) in GAPS.items():
        per[gap] = per[high] - per[low]
    return per, refinements


def summarize(per):
    """{key: mean, key + "_sem": standard error of the mean over points (None for one point)} of the
    per-point arrays ``per``, as host floats."""
    out = {}
    for key, v in per.items():
        v = np.asarray(v, dtype=np.float64)
        out[key] = float(v.mean())
        out[f"{key}_sem"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
    return out
