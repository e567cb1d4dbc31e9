"""Evaluation of a trained model, batched and without taping: the ELBO, the IWAE bounds L_k and the
importance-sampled log-likelihood log p(x) ~ L_K, within a stated memory bound.

Everything runs on the device the data ``x`` live on: the noise comes from generators of that device
(see :func:`gvae.kernels.generator`), and the per-example results are device arrays (float64) until
:func:`evaluate` copies them to the host once, at the end. An evaluation of log p(x) on a test set takes
as long as the training did (5,000 samples of 10,000 images: 50 million decoder passes), so it keeps its
progress in a file and goes on from it after an interruption (:func:`evaluate`'s ``partial``)."""
import hashlib
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import kernels
from ..kernels import array_module, device_of, generator, to_device, to_host
from ..io.files import atomic_path
from ..model.objectives import elbo, log_weights

PARTIAL_FORMAT = 1  # of the partial file's content; a file of another format is started over
SAVE_SECONDS = 30.0  # between two writes of an evaluation's progress (a batch of K = 5000 takes ~25 s)


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


def _chunk(model, n_samples, batch_size, memory_mb):
    """Samples per decoder pass of :func:`importance_sampling`."""
    return min(n_samples, sample_chunk(model, batch_size, memory_mb * 2 ** 20))


def importance_sampling(model, params, x, n_samples, seed, ks=(1, 5, 50), batch_size=100, memory_mb=256,
                        progress=True, resume_from=None, on_batch=None):
    """Per-example IWAE bounds from ``n_samples`` importance samples per row of x.

    Returns a dict of float64 arrays of shape (N,) on x's device: ``log_likelihood`` = L_K (K =
    n_samples, the estimate of log p(x)) and ``iwae_{k}`` for each k in ``ks`` that divides K,
    estimated without extra samples as the mean of L_k over the K / k disjoint groups of the K samples.
    The log-weights of one batch (K x batch float64) and one decoder pass (see :func:`sample_chunk`) are
    what is held in memory at once.

    The noise of the rows [start, start + batch_size) comes from a generator of their own, seeded with
    (``seed``, start) on x's device, so no batch depends on another: an evaluation stopped after some
    batches goes on to the result of one that ran through. ``resume_from`` = (rows, arrays): the results
    of the first ``rows`` rows (a multiple of batch_size) from a call with the same arguments;
    ``on_batch(rows, out)`` is called after each batch with the rows done and the result dict (device
    arrays whose first ``rows`` entries are final)."""
    if n_samples < 1:
        raise ValueError(f"the number of importance samples must be >= 1, got {n_samples}")
    ks = [k for k in ks if n_samples % k == 0 and k < n_samples]
    chunk = _chunk(model, n_samples, batch_size, memory_mb)
    xp = array_module(x)
    device = device_of(x)
    n = len(x)
    out = {"log_likelihood": xp.empty(n, dtype=np.float64),
           **{f"iwae_{k}": xp.empty(n, dtype=np.float64) for k in ks}}
    done = 0
    if resume_from is not None:
        done, arrays = resume_from
        if not (0 <= done <= n and (done % batch_size == 0 or done == n)) or set(arrays) != set(out):
            raise ValueError(f"resume_from: expected the results {sorted(out)} of a multiple of {batch_size} "
                             f"rows, got {sorted(arrays)} of {done} rows")
        for key, values in arrays.items():
            out[key][:done] = to_device(values[:done], device)
    bar = tqdm(total=n * n_samples, initial=done * n_samples, unit="sample", unit_scale=True,
               disable=not progress, file=sys.stderr, desc=f"log p(x), K={n_samples}")
    logw = xp.empty((n_samples, batch_size), dtype=np.float64)
    try:
        for start in range(done, n, batch_size):
            xb = x[start:start + batch_size]
            b = len(xb)
            rng = generator(device, (seed, start))
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
            if on_batch is not None:
                on_batch(start + b, out)
    finally:
        bar.close()  # before any message about an interruption
    return out


def evaluate(model, params, x, n_samples=5000, ks=(1, 5, 50), seed=0, batch_size=100, memory_mb=256,
             progress=True, kl="analytic", partial=None, save_seconds=None):
    """Test metrics of a model on x, computed on x's device: per-example host arrays and their means
    (nats per data point), and the seconds taken.

    ``partial``: a file (.npz) that keeps the importance sampling's progress, written atomically at most
    every ``save_seconds`` (default :data:`SAVE_SECONDS`) while it runs, and when it is interrupted
    (KeyboardInterrupt: Ctrl-C, or SIGTERM as gvae's commands take it). A call that finds there the
    progress of an evaluation of the same parameters, data and settings goes on from it (the result is
    the one of a call that ran through; the seconds count both); other content is replaced. The caller
    removes the file once the result is stored. One process at a time may use a file (the caller's
    lock)."""
    start = time.perf_counter()
    device = device_of(x)
    per = {"elbo": per_example_elbo(model, params, x, generator(device, seed), kl=kl)}
    kept = None
    if partial is not None:
        key = _partial_key(model, params, x, n_samples, ks, seed, batch_size, memory_mb)
        kept = _Progress(Path(partial), key, len(x), save_seconds)
        if kept.resume_from is not None and progress:
            print(f"log p(x): going on from {kept.resume_from[0]} of {len(x)} rows evaluated before ({partial})",
                  file=sys.stderr)
    try:
        per.update(importance_sampling(model, params, x, n_samples, seed + 1, ks, batch_size, memory_mb, progress,
                                       resume_from=None if kept is None else kept.resume_from,
                                       on_batch=None if kept is None else kept.batch_done))
    except KeyboardInterrupt:
        if kept is not None:
            kept.save()
        raise
    per = {key: to_host(v) for key, v in per.items()}
    means = {key: float(np.mean(v)) for key, v in per.items()}
    return per, means, (0.0 if kept is None else kept.earlier) + time.perf_counter() - start


class _Progress:
    """An evaluation's progress in its partial file: what an earlier run left there under the same
    ``key`` (``resume_from``, ``earlier`` seconds), and the writes of this run's (at most every
    ``save_seconds``, and by :meth:`save`)."""

    def __init__(self, path, key, n, save_seconds=None):
        self.path, self.key, self.n = path, key, n
        self.every = SAVE_SECONDS if save_seconds is None else save_seconds
        found = _read_partial(path, key)
        self.resume_from, self.earlier = (None, 0.0) if found is None else (found[:2], found[2])
        self.started = self.saved = time.perf_counter()
        self.rows, self.out = 0, None

    def batch_done(self, rows, out):
        """The on_batch of :func:`importance_sampling`."""
        self.rows, self.out = rows, out
        if rows < self.n and time.perf_counter() - self.saved >= self.every:
            self.save()

    def save(self):
        """Write the rows done so far (nothing before the first batch of this run)."""
        if self.out is None:
            return
        self.saved = time.perf_counter()
        arrays = {f"result_{name}": to_host(values[:self.rows]) for name, values in self.out.items()}
        with atomic_path(self.path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(self.key), rows=np.array(self.rows),
                         seconds=np.array(self.earlier + self.saved - self.started), **arrays)


def _partial_key(model, params, x, n_samples, ks, seed, batch_size, memory_mb):
    """What an evaluation's partial results depend on, as a JSON string: the settings, the sampling's
    chunk, the dtype and SHA-256 digests of the parameters and of the data."""
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(to_host(params[name])).tobytes())
    data = hashlib.sha256(np.ascontiguousarray(to_host(x)).tobytes()).hexdigest()
    return json.dumps({"format": PARTIAL_FORMAT, "n_samples": int(n_samples), "ks": sorted(int(k) for k in ks),
                       "seed": int(seed), "batch_size": int(batch_size),
                       "chunk": _chunk(model, n_samples, batch_size, memory_mb),
                       "dtype": str(model.dtype), "params_sha256": digest.hexdigest(), "data_sha256": data,
                       "rows": len(x)}, sort_keys=True)


def _read_partial(path, key):
    """(rows, results, seconds) from the partial file ``path`` if it holds progress under ``key``; else
    None (no file, another evaluation's, or unreadable: it is a cache, started over)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            rows, seconds = int(f["rows"]), float(f["seconds"])
            arrays = {name[len("result_"):]: f[name] for name in f.files if name.startswith("result_")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if any(v.shape != (rows,) or v.dtype != np.float64 for v in arrays.values()):
        return None
    return rows, arrays, seconds
