"""Evaluation of a trained model, batched and without taping: the ELBO, the IWAE bounds L_k and the
importance-sampled log-likelihood log p(x) ~ L_K, within a stated memory bound.

Everything runs on the device the data ``x`` live on: the noise comes from ``rng``, a generator of that
device (see :func:`gvae.kernels.generator`), and the per-example results are device arrays (float64)
until :func:`evaluate` copies them to the host once, at the end."""
import sys
import time

import numpy as np
from tqdm import tqdm

from .. import kernels
from ..kernels import array_module, device_of, generator, to_host
from ..model.objectives import elbo, log_weights


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


def sample_chunk(model, batch_size, memory_bytes):
    """Samples per decoder pass so that one pass's activations fit in ``memory_bytes``.

    A pass over c samples of a batch holds about three arrays per layer of c * batch * width entries
    (pre-activation, output, likelihood scratch) in the model's dtype: every network that runs once per
    sample (each stochastic layer's decoder; in a hierarchy the encoders above the bottom one too) and
    the latent draws."""
    networks = [layer.decoder for layer in model.layers] + [layer.encoder for layer in model.layers[1:]]
    widths = sum(sum(net.sizes[1:]) for net in networks) + model.noise_size * 4
    per_sample = 3 * batch_size * widths * model.dtype.itemsize
    return max(1, int(memory_bytes // per_sample))


def importance_sampling(model, params, x, n_samples, rng, ks=(1, 5, 50), batch_size=100,
                        memory_mb=256, progress=True):
    """Per-example IWAE bounds from ``n_samples`` importance samples per row of x.

    Returns a dict of float64 arrays of shape (N,) on x's device: ``log_likelihood`` = L_K (K =
    n_samples, the estimate of log p(x)) and ``iwae_{k}`` for each k in ``ks`` that divides K,
    estimated without extra samples as the mean of L_k over the K / k disjoint groups of the K samples.
    The log-weights of one batch (K x batch float64) and one decoder pass (see :func:`sample_chunk`) are
    what is held in memory at once."""
    if n_samples < 1:
        raise ValueError(f"the number of importance samples must be >= 1, got {n_samples}")
    ks = [k for k in ks if n_samples % k == 0 and k < n_samples]
    chunk = min(n_samples, sample_chunk(model, batch_size, memory_mb * 2 ** 20))
    xp = array_module(x)
    n = len(x)
    out = {"log_likelihood": xp.empty(n, dtype=np.float64),
           **{f"iwae_{k}": xp.empty(n, dtype=np.float64) for k in ks}}
    bar = tqdm(total=n * n_samples, unit="sample", unit_scale=True, disable=not progress, file=sys.stderr,
               desc=f"log p(x), K={n_samples}")
    logw = xp.empty((n_samples, batch_size), dtype=np.float64)
    for start in range(0, n, batch_size):
        xb = x[start:start + batch_size]
        b = len(xb)
        for s in range(0, n_samples, chunk):
            c = min(chunk, n_samples - s)
            eps = rng.standard_normal((c, b, model.noise_size), dtype=model.dtype)
            rec, log_ratio = log_weights(model, params, xb, eps)
            logw[s:s + c, :b] = rec + log_ratio + model.likelihood.nats_offset()
            bar.update(c * b)
        block = logw[:, :b]
        out["log_likelihood"][start:start + b] = kernels.log_mean_exp(block, axis=0)[0]
        for k in ks:
            groups = block.reshape(n_samples // k, k, b)
            out[f"iwae_{k}"][start:start + b] = kernels.log_mean_exp(groups, axis=1)[0].mean(axis=0)
    bar.close()
    return out


def evaluate(model, params, x, n_samples=5000, ks=(1, 5, 50), seed=0, batch_size=100, memory_mb=256,
             progress=True, kl="analytic"):
    """Test metrics of a model on x, computed on x's device: per-example host arrays and their means
    (nats per data point), and the seconds taken."""
    start = time.perf_counter()
    device = device_of(x)
    per = {"elbo": per_example_elbo(model, params, x, generator(device, seed), kl=kl)}
    per.update(importance_sampling(model, params, x, n_samples, generator(device, seed + 1), ks,
                                   batch_size, memory_mb, progress))
    per = {key: to_host(v) for key, v in per.items()}
    means = {key: float(np.mean(v)) for key, v in per.items()}
    return per, means, time.perf_counter() - start
