"""The numbers a run is validated and tested on while it trains: the ELBO over a data set (nats per
image, and in bits per dimension for continuous data), and the importance-sampled log p(x) the models
beyond the VAE report. Batched, without taping, on the device the data live on."""
import math

import numpy as np

from .. import ops
from ..kernels import array_module, to_host
from ..model.objectives import elbo

# Importance samples and test images of the log p(x) estimate the models beyond the VAE report in their
# summaries (what gvae eval --iw-samples 1000 --limit 1000 gives a VAE), and images a pass.
LOG_PX_SAMPLES, LOG_PX_IMAGES, LOG_PX_BATCH = 1000, 1000, 10

def dataset_elbo(model, params, x, rng, batch_size=500, n_samples=1, kl="analytic"):
    """Mean ELBO per data point (nats) over the rows of x, with fresh noise from ``rng``: a host float
    (the one read back from the device)."""
    return float(per_example_elbo(model, params, x, rng, batch_size, n_samples, kl).mean())


def per_example_elbo(model, params, x, rng, batch_size=500, n_samples=1, kl="analytic"):
    """The ELBO of every row of x, float64 (N,) on x's device, in nats of the data (see
    Likelihood.nats_offset)."""
    xp = array_module(x)
    out = xp.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        eps = rng.standard_normal((n_samples, len(xb), model.noise_size), dtype=model.dtype)
        out[start:start + len(xb)] = elbo(model, params, xb, eps, kl)
    return out + model.likelihood.nats_offset()


def bits_per_dim(model, nats):
    """For continuous likelihoods: {name + "_bits_per_dim": -value / (n log 2)} of each entry of ``nats``
    (name -> nats per image); {} for binary data."""
    if not model.likelihood.continuous:
        return {}
    return {f"{k}_bits_per_dim": -v / (model.n_in * math.log(2)) for k, v in nats.items()}


def standard_normal(rng, shape, dtype):
    """The noise of a reparameterised Gaussian pass."""
    return rng.standard_normal(shape, dtype=dtype)


def log_px_estimate(log_weights, noise_size, dtype, x, rng, samples=LOG_PX_SAMPLES, images=LOG_PX_IMAGES,
                    batch_size=LOG_PX_BATCH, noise=standard_normal):
    """The mean over the first ``images`` rows of x of log (1/K) sum_k w_k, K = ``samples``: an importance
    sampling bound on log p(x) (the IWAE bound L_K; with one sample the mean log-weight, an ELBO) whose
    log-weights ``log_weights(xb, eps)`` gives, (K, B),
    for noise eps (K, B, ``noise_size``) of ``dtype`` drawn from ``rng`` by ``noise(rng, shape, dtype)``.
    Returns (estimate, images used): a host float, one read."""
    n = min(images, len(x))
    total = 0.0  # a device scalar after the first batch
    for lo in range(0, n, batch_size):
        xb = x[lo:min(lo + batch_size, n)]
        eps = noise(rng, (samples, len(xb), noise_size), dtype)
        total = total + ops.log_mean_exp(log_weights(xb, eps), axis=0)[0].astype(np.float64).sum()
    return float(to_host(total)) / n, n


def log_px_summary(log_weights, model, x, rng, noise=standard_normal, samples=LOG_PX_SAMPLES):
    """A test summary's importance-sampled log p(x): {"test_log_px": :func:`log_px_estimate` of
    ``log_weights`` on x with ``samples`` draws of ``noise`` of ``model.noise_size`` from ``rng``, in nats
    of the data, "log_px_samples", "log_px_images"}."""
    estimate, n = log_px_estimate(log_weights, model.noise_size, model.dtype, x, rng, samples=samples, noise=noise)
    return {"test_log_px": estimate + model.likelihood.nats_offset(), "log_px_samples": samples,
            "log_px_images": n}
