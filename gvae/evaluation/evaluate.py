"""Evaluation of a trained model, batched and without taping: the ELBO, the IWAE bounds L_k and the
importance-sampled log-likelihood log p(x) ~ L_K, within a stated memory bound.

Everything runs on the device the data ``x`` live on: the noise comes from generators of that device
(see :func:`gvae.kernels.generator`), and the per-example results are device arrays (float64) until
:func:`evaluate` copies them to the host once, at the end. An evaluation of log p(x) on a test set is long
(5,000 samples of 10,000 images: 50 million decoder passes), so it keeps its progress in a file and goes on from it after an interruption (:func:`evaluate`'s ``partial``).

Where the log-weights come from: every function here takes a VAE (the model of ``gvae train``'s default task,
whose passes it cuts into blocks that stay in cache) or a :class:`LogWeightSource`, such as a task's own
log-weights (:class:`gvae.evaluation.task_weights.TaskWeights`: binary, autoregressive, gamma and Poisson
latents, HVM's extended space). Both give the same batching, noise streams, progress file and checks."""
import abc
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from .. import kernels
from ..kernels import array_module, blocks, device_of, generator, on_host, over_blocks, to_device, to_host
from ..io.archive import Npz, check_regular_file
from ..io.files import atomic_path
from ..model.objectives import log_ratio
from ..training.progress import about, progress_bar
from ..training.validation import per_example_elbo

PARTIAL_FORMAT = 1  # of the partial file's content; a file of another format is started over
SAVE_SECONDS = 30.0  # between two writes of an evaluation's progress
KEY_BYTES = 2 ** 16  # the most read of a partial file's key (a few hundred characters of JSON)
ORDER_TOLERANCE = 1e-9  # relative rounding allowed in L_k <= L_k' (that of the log-mean-exps is ~1e-15)
TRIAL_SECONDS = 0.5  # timed decoder passes behind the estimate an evaluation prints before it starts
TRIAL_STREAM = 0x7E57  # the trial's noise: a stream of its own, whose values matter to nothing
# The widest activation of one decoder block on the CPU (:func:`block_samples`), chosen by measuring block
# sizes against whole parts (docs/notes/2026-11-performance-evaluation.md, "Evaluation in blocks"): smaller
# blocks pay the per-kernel calls of more, shorter products; larger ones leave the caches.
BLOCK_BYTES = 2 ** 22


def sample_chunk(model, batch_size, memory_bytes):
    """Samples per decoder pass so that one pass's activations fit in ``memory_bytes``.

    A pass over c samples of a batch holds about three arrays per layer of c * batch * width entries
    (pre-activation, output, likelihood scratch) in the model's dtype: every network that runs once per
    sample (each stochastic layer's decoder; in a hierarchy the encoders above the bottom one too) and
    the latent draws."""
    widths = sum(sum(net.sizes[1:]) for net in _per_sample_networks(model)) + model.noise_size * 4
    per_sample = 3 * batch_size * widths * model.dtype.itemsize
    return max(1, int(memory_bytes // per_sample))


def _per_sample_networks(model):
    """The networks a pass runs once per sample: each stochastic layer's decoder, and in a hierarchy the
    encoders above the bottom one."""
    return [layer.decoder for layer in model.layers] + [layer.encoder for layer in model.layers[1:]]


class LogWeightSource(abc.ABC):
    """What an evaluation samples: K draws per row of x, each weighted by log p(x, z) - log q(z|x) (nats of
    the data). ``dtype`` and ``noise_size`` say what one draw's noise is; a subclass gives the rest."""
    dtype = None
    noise_size = None

    @abc.abstractmethod
    def draw(self, rng, shape):
        """Noise of ``shape`` (c, b) draws from the generator ``rng``: an array (c, b, noise_size)."""

    @abc.abstractmethod
    def samples_per_pass(self, batch_size, memory_bytes):
        """How many draws of ``batch_size`` rows one pass may take within ``memory_bytes``, at least one."""

    @abc.abstractmethod
    def log_weights_into(self, params, xb, eps, out):
        """out (c, b) = the log-weights of the draws eps (c, b, noise_size) of the rows xb (b, n), on the
        calling thread (:func:`_log_weights_into` gives each thread a part of the draws)."""

    @abc.abstractmethod
    def elbo(self, params, x, rng, kl):
        """The ELBO of every row of x (float64 (N,) on x's device; one draw a row from ``rng``, the KL as
        ``kl`` says where the source has one in closed form)."""


class _VAE(LogWeightSource):
    """A VAE's log-weights: the encoder and the posterior's sampling once per part of the draws, the decoder
    and the likelihood in blocks of :func:`block_samples`."""

    def __init__(self, model):
        self.model, self.dtype, self.noise_size = model, model.dtype, model.noise_size

    def draw(self, rng, shape):
        return rng.standard_normal((*shape, self.noise_size), dtype=self.dtype)

    def samples_per_pass(self, batch_size, memory_bytes):
        return sample_chunk(self.model, batch_size, memory_bytes)

    def log_weights_into(self, params, xb, eps, out):
        model = self.model
        step = block_samples(model, len(xb)) if on_host(xb) else len(eps)
        qs, zs = model.infer(params, xb, eps)
        ratio = log_ratio(model, params, qs, zs)
        offset = model.likelihood.nats_offset()
        for s in range(0, len(eps), step):
            decoded = model.likelihood_params(params, [z[s:s + step] for z in zs])
            rec = model.likelihood.log_prob(decoded, xb, params)
            out[s:s + len(rec)] = rec + ratio[s:s + step] + offset

    def elbo(self, params, x, rng, kl):
        return per_example_elbo(self.model, params, x, rng, kl=kl)


def _source(model):
    """``model`` as a :class:`LogWeightSource`: itself if it is one, else the VAE's."""
    return model if isinstance(model, LogWeightSource) else _VAE(model)


def _chunk(model, n_samples, batch_size, memory_mb):
    """Samples per decoder pass of :func:`importance_sampling` (``model``: a VAE or a source)."""
    return min(n_samples, _source(model).samples_per_pass(batch_size, memory_mb * 2 ** 20))


def _bounds(n_samples, ks):
    """The k of ``ks`` whose bounds L_k an evaluation with n_samples samples reports: those dividing it."""
    return sorted(k for k in ks if n_samples % k == 0 and k < n_samples)


def _result_names(ks):
    """The per-example results of :func:`importance_sampling` for the bounds ``ks`` (from :func:`_bounds`)."""
    return ["log_likelihood"] + [f"iwae_{k}" for k in ks]


def importance_sampling(model, params, x, n_samples, seed, ks=(1, 5, 50), batch_size=100, memory_mb=256,
                        progress=True, resume_from=None, on_batch=None):
    """Per-example IWAE bounds from ``n_samples`` importance samples per row of x, weighted by ``model``: a VAE
    or a :class:`LogWeightSource`.

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
    arrays whose first ``rows`` entries are final).

    On the CPU with gvae's threads a VAE's batches run side by side, one per thread (:func:`_side_by_side`),
    each computed exactly as a batch alone (the same cut of each pass, :func:`_log_weights_into`), so the
    results do not depend on which batches ran together; the batches left at the end, fewer than the
    threads, run one after the other, each on all the threads."""
    if n_samples < 1:
        raise ValueError(f"the number of importance samples must be >= 1, got {n_samples}")
    ks = _bounds(n_samples, ks)
    source = _source(model)
    chunk = _chunk(source, n_samples, batch_size, memory_mb)
    xp = array_module(x)
    device = device_of(x)
    n = len(x)
    out = {name: xp.empty(n, dtype=np.float64) for name in _result_names(ks)}
    done = 0
    if resume_from is not None:
        done, arrays = resume_from
        if not (0 <= done <= n and (done % batch_size == 0 or done == n)) or set(arrays) != set(out):
            raise ValueError(f"resume_from: expected the results {sorted(out)} of a multiple of {batch_size} "
                             f"rows, got {sorted(arrays)} of {done} rows")
        for key, values in arrays.items():
            out[key][:done] = to_device(values[:done], device)
    # The rate and the time left from the whole run's average (smoothing=0): the work is the same pass over
    # and over, and tqdm's default moving average stays low for long after a momentary dip.
    bar = progress_bar(progress, n * n_samples, f"log p(x), K={n_samples}", unit="sample", initial=done * n_samples,
                       unit_scale=True, smoothing=0)
    count = kernels.get_threads() if on_host(x) else 1  # the threads each pass is cut for
    side = _side_by_side(source, count)
    logws = [xp.empty((n_samples, batch_size), dtype=np.float64) for _ in range(side)]
    try:
        first = done
        while first < n:
            starts = range(first, min(n, first + batch_size * side), batch_size)
            if side == 1 or len(starts) < side:  # one at a time; or fewer left than threads: each on all of them
                starts = starts[:1]
                results = [_batch(source, params, x, first, batch_size, n_samples, seed, ks, chunk, logws[0], count,
                                  bar.update)]
            else:
                results = over_blocks(lambda lo, hi: _batch(source, params, x, starts[lo], batch_size, n_samples, seed,
                                                             ks, chunk, logws[lo], count),
                                      [(k, k + 1) for k in range(len(starts))])
                bar.update((min(n, first + batch_size * side) - first) * n_samples)
            for start, rows in zip(starts, results):
                for key, values in rows.items():
                    out[key][start:start + batch_size] = values
                if on_batch is not None:
                    on_batch(min(start + batch_size, n), out)
            first = starts[-1] + batch_size
    finally:
        bar.close()  # before any message about an interruption
    return out


def block_samples(model, batch_size, block_bytes=None):
    """Samples per decoder block of a pass on the CPU: as many as keep a block's widest activation (samples
    x batch_size x the widest layer of a network run per sample, in the model's dtype) within ``block_bytes``
    (default :data:`BLOCK_BYTES`), at least one."""
    block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
    widest = max(max(net.sizes[1:]) for net in _per_sample_networks(model))
    return max(1, int(block_bytes // (batch_size * widest * model.dtype.itemsize)))


def _side_by_side(source, count):
    """How many batches :func:`importance_sampling` runs at once: one per thread (``count``) for a VAE of
    one stochastic layer (``count`` is 1 off the CPU), else 1. Side by side, each thread draws its batch's noise from the
    batch's own generator and takes the batch's passes alone: no thread waits while another draws, nor at
    the end of each pass for the slower part. Such a VAE's pass holds one decoder block of samples at a time
    (:func:`block_samples`) beside its draws, far within the memory bound that sizes a pass (which counts
    every layer's activations for all its samples), so batches side by side keep within it; a hierarchy
    runs its upper encoders over a whole pass, and other sources hold a whole pass's activations: they
    keep one batch at a time."""
    return count if isinstance(source, _VAE) and len(source.model.layers) == 1 else 1


def _log_weights_into(source, params, xb, eps, out, count=None):
    """out (c, b) = the log-weights of the samples eps (c, b, noise) of the rows xb from the
    :class:`LogWeightSource` ``source``. On the CPU with ``count`` threads (default gvae's) the c samples are
    cut into one contiguous part per thread, each taken through the whole model on its thread (whose kernels then run
    there, one after the other): no hand-over between the layers, where a pass over all c samples split each
    product and elementwise kernel over the threads and waited for the slower half after each. A VAE's part
    goes through the encoder and the posterior's sampling once, then through the decoder and the likelihood
    in blocks of :func:`block_samples`: each product's output is still in the core's cache when the bias, the
    activation and the likelihood pass over it, where a whole part's activations (tens of MB) went out to
    memory and back between kernels. A sample's weight is computed by the same kernels either way, as rows
    of the same products: the same bits where OpenBLAS rounds a row alike in products of any number of
    rows; where its kernels round some rows differently when a product has fewer rows, as they do for the
    row blocks of a pass split over the threads, results may differ in the last bits between thread counts
    (never between runs on the same count). Called inside a task of gvae's threads (a batch run beside
    another), the same parts run one after the other on that thread: the same products, the same bits."""
    parts = blocks(len(eps), 1, count) if on_host(xb) else [(0, len(eps))]
    over_blocks(lambda lo, hi: source.log_weights_into(params, xb, eps[lo:hi], out[lo:hi]), parts)


def _batch(source, params, x, start, batch_size, n_samples, seed, ks, chunk, logw, count=None, counted=None):
    """The results of the rows [start, start + batch_size) of x, as :func:`importance_sampling` computes
    them (a dict of float64 (b,) arrays, b the rows there), in the float64 scratch ``logw`` (K,
    batch_size), each pass cut for ``count`` threads (:func:`_log_weights_into`); ``counted(m)`` is told of
    each m samples x rows done."""
    xb = x[start:start + batch_size]
    b = len(xb)
    rng = generator(device_of(x), (seed, start))
    for s in range(0, n_samples, chunk):
        c = min(chunk, n_samples - s)
        eps = source.draw(rng, (c, b))
        _log_weights_into(source, params, xb, eps, logw[s:s + c, :b], count)
        if counted is not None:
            counted(c * b)
    block = logw[:, :b]
    rows = {"log_likelihood": kernels.log_mean_exp(block, axis=0)[0]}
    for k in ks:
        groups = block.reshape(n_samples // k, k, b)
        rows[f"iwae_{k}"] = kernels.log_mean_exp(groups, axis=1)[0].mean(axis=0)
    return rows


def evaluate(model, params, x, n_samples=5000, ks=(1, 5, 50), seed=0, batch_size=100, memory_mb=256,
             progress=True, kl="analytic", partial=None, save_seconds=None):
    """Test metrics of ``model`` (a VAE or a :class:`LogWeightSource`) on x, computed on x's device: per-example
    host arrays (``elbo`` and those of :func:`importance_sampling`) and their means (nats per data point), and
    the seconds taken. With ``progress``, one line on stderr first states the
    work and an estimate of its time (from a short timed trial, :func:`estimate_seconds`), then a bar.

    ``partial``: a file (.npz) that keeps the importance sampling's progress, written atomically at most
    every ``save_seconds`` (default :data:`SAVE_SECONDS`) while it runs, and when it is interrupted
    (KeyboardInterrupt: Ctrl-C, or SIGTERM as gvae's commands take it); nothing is kept before the first
    batch of ``batch_size`` rows is done. A call that finds there the progress of an evaluation of the
    same parameters, data and settings goes on from it (the result is the one of a call that ran through;
    the seconds count both) once the stored results pass a check (:func:`_stored_problem`: one stored
    batch, drawn at random, is recomputed and must match bit for bit). Another evaluation's progress, a
    damaged file or results that fail the check are removed at once, with a line on stderr saying why,
    and the evaluation starts over. The caller removes the file once the result is stored. One process at
    a time may use a file (the caller's lock)."""
    start = time.perf_counter()
    device = device_of(x)
    source = _source(model)
    per = {"elbo": source.elbo(params, x, generator(device, seed), kl)}
    kept = None
    if partial is not None:
        key = _partial_key(source, params, x, n_samples, ks, seed, batch_size, memory_mb)
        kept = _Progress(Path(partial), key, len(x), batch_size, _result_names(_bounds(n_samples, ks)), save_seconds)
        if kept.resume_from is not None:
            if progress:
                print(f"log p(x): checking the {kept.resume_from[0]} rows kept in {partial} (recomputing one of "
                      "their batches)", file=sys.stderr)
            problem = _stored_problem(source, params, x, kept.resume_from, n_samples, seed + 1, ks, batch_size,
                                      memory_mb)
            if problem is not None:
                kept.start_over(problem)
            elif progress:
                print(f"log p(x): going on from {kept.resume_from[0]} of {len(x)} rows evaluated before ({partial})",
                      file=sys.stderr)
    done = 0 if kept is None or kept.resume_from is None else kept.resume_from[0]
    if progress and done < len(x):
        print(_work_line(source, params, x[done:], n_samples, batch_size, memory_mb, partial), file=sys.stderr)
    try:
        per.update(importance_sampling(source, params, x, n_samples, seed + 1, ks, batch_size, memory_mb, progress,
                                       resume_from=None if kept is None else kept.resume_from,
                                       on_batch=None if kept is None else kept.batch_done))
    except KeyboardInterrupt:
        if kept is not None:
            kept.save()
        raise
    per = {key: to_host(v) for key, v in per.items()}
    means = {key: float(np.mean(v)) for key, v in per.items()}
    return per, means, (0.0 if kept is None else kept.earlier) + time.perf_counter() - start


def estimate_seconds(model, params, x, n_samples, batch_size=100, memory_mb=256, trial_seconds=TRIAL_SECONDS):
    """(estimated seconds of :func:`importance_sampling` on all rows of x, seconds of its timed trial).

    The trial runs decoder passes as the evaluation does (one pass: a batch's rows and one chunk of
    samples, with noise of its own) once untimed, then again until ``trial_seconds`` have passed and at
    least three were timed, or as many as the whole evaluation makes; the median pass's time per sample
    and row is scaled to all of them. The log-mean-exp of the weights is left out (a small share). An
    estimate: other load on the machine, or a batch of other size at the end, makes the real time differ."""
    xb = x[:batch_size]
    source = _source(model)
    c = _chunk(source, n_samples, batch_size, memory_mb)
    rng = generator(device_of(x), TRIAL_STREAM)
    work = len(x) * n_samples
    passes = -(-work // (c * len(xb)))
    times = []
    logw = array_module(x).empty((c, len(xb)), dtype=np.float64)
    for i in range(passes + 1):
        eps = source.draw(rng, (c, len(xb)))
        began = time.perf_counter()
        _log_weights_into(source, params, xb, eps, logw)
        to_host(logw[:1, :1])  # waits for the device
        if i > 0:  # the first pass may include one-off costs (loading compiled kernels, allocations)
            times.append(time.perf_counter() - began)
            if len(times) >= 3 and sum(times) >= trial_seconds:
                break
    return float(np.median(times)) / (c * len(xb)) * work, sum(times)


def _work_line(model, params, x, n_samples, batch_size, memory_mb, partial):
    """The line that states an evaluation's work and estimated time before it starts."""
    n = len(x)
    seconds, trial = estimate_seconds(model, params, x, n_samples, batch_size, memory_mb)
    per_batch = seconds * min(batch_size, n) / n
    batches = -(-n // batch_size)
    kept = (f"; an interruption keeps the batches done in {Path(partial).name} (the first ends in "
            f"{about(per_batch)})" if partial is not None else "")
    return (f"log p(x): {n:,} images x {n_samples:,} samples = {n * n_samples:,} decoder passes in {batches:,} "
            f"batch{'es' if batches > 1 else ''} of {min(batch_size, n)}: {about(seconds)} on this "
            f"device (an estimate from a {trial:.1f} s trial){kept}")


class _StartOver(Exception):
    """What makes a partial file unusable (another evaluation's, or damaged); the message says why."""


class _Progress:
    """An evaluation's progress in its partial file: what an earlier run left there under the same
    ``key`` (``resume_from``, ``earlier`` seconds), and the writes of this run's (at most every
    ``save_seconds``, and by :meth:`save`). A file that is not usable is removed at once, saying why."""

    def __init__(self, path, key, n, batch_size, names, save_seconds=None):
        self.path, self.key, self.n = path, key, n
        self.every = SAVE_SECONDS if save_seconds is None else save_seconds
        self.resume_from, self.earlier = None, 0.0
        try:
            found = _read_partial(path, key, n, batch_size, names)
        except _StartOver as e:
            self.start_over(str(e))
        else:
            if found is not None:
                self.resume_from, self.earlier = found[:2], found[2]
        self.started = self.saved = time.perf_counter()
        self.rows, self.out = 0, None

    def start_over(self, why):
        """Forget the file's progress: remove it, with one line on stderr saying why."""
        print(f"log p(x): starting over: {self.path} {why}", file=sys.stderr)
        self.path.unlink(missing_ok=True)
        self.resume_from, self.earlier = None, 0.0

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
    source = _source(model)
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(to_host(params[name])).tobytes())
    data = hashlib.sha256(np.ascontiguousarray(to_host(x)).tobytes()).hexdigest()
    return json.dumps({"format": PARTIAL_FORMAT, "n_samples": int(n_samples), "ks": sorted(int(k) for k in ks),
                       "seed": int(seed), "batch_size": int(batch_size),
                       "chunk": _chunk(source, n_samples, batch_size, memory_mb),
                       "dtype": str(source.dtype), "params_sha256": digest.hexdigest(), "data_sha256": data,
                       "rows": len(x)}, sort_keys=True)


def _read_partial(path, key, n, batch_size, names):
    """(rows, results, seconds) kept in the partial file ``path`` under ``key`` for an evaluation of n rows
    in batches of ``batch_size`` with the results ``names``; None when there is no file. Raises
    :class:`_StartOver` for another evaluation's progress or a damaged file (any that cannot be what
    :meth:`_Progress.save` wrote: the rows done in whole batches, every result for each), and ValueError
    for something that is not a file (a folder, say: it is not removed)."""
    if not path.exists():
        if path.is_symlink():
            raise _StartOver("is a link to nothing")
        return None
    check_regular_file(path)
    try:
        with Npz(path, compressed=False) as f:  # written by np.savez; read in bounded memory
            if str(f.read("key", KEY_BYTES)) != key:
                raise _StartOver("holds the progress of another evaluation (other parameters, data or settings)")
            rows, seconds = f.read("rows", 8), f.read("seconds", 8)
            found = sorted(name[len("result_"):] for name in f.names if name.startswith("result_"))
            if found != sorted(names):
                raise _StartOver(f"is damaged: it holds the results {found}, expected {sorted(names)}")
            if not (rows.shape == () and rows.dtype.kind in "iu" and 0 < rows <= n
                    and (rows % batch_size == 0 or rows == n)):
                raise _StartOver(f"is damaged: it holds {rows} rows, expected a multiple of the batch size "
                                 f"{batch_size} up to {n}")
            rows = int(rows)
            arrays = {name: f.read(f"result_{name}", 8 * rows) for name in names}
    except ValueError as e:
        raise _StartOver(f"is damaged ({str(e).removeprefix(f'{path}: ')})") from None
    if not (seconds.shape == () and seconds.dtype.kind == "f" and np.isfinite(seconds) and seconds >= 0):
        raise _StartOver(f"is damaged: its seconds are {seconds}")
    if any(v.shape != (rows,) or v.dtype != np.float64 for v in arrays.values()):
        raise _StartOver("is damaged: its results are not float64 arrays of one value per row")
    return rows, arrays, float(seconds)


def _stored_problem(model, params, x, resume_from, n_samples, seed, ks, batch_size, memory_mb):
    """Why the stored results ``resume_from`` = (rows, arrays) of an evaluation cannot be its own, or None.

    Each batch's noise depends on (seed, first row) alone, so a stored batch recomputed must give the
    same numbers bit for bit: one batch, drawn at random (the file cannot predict which), is recomputed.
    Every stored row must also obey what holds for any one set of samples, whatever the noise: no NaN,
    no +inf, and L_k <= L_k' whenever k divides k' (log is concave: the mean of L_k over the groups of k
    within a group of k' is at most its L_k'), with L_K = log p(x) the largest."""
    source = _source(model)
    rows, arrays = resume_from
    ks = _bounds(n_samples, ks)
    for name, values in arrays.items():
        if np.isnan(values).any() or np.isposinf(values).any():
            return f"holds NaN or +inf in {name}"
    order = ks + [n_samples]
    names = {k: f"iwae_{k}" for k in ks} | {n_samples: "log_likelihood"}
    for i, k in enumerate(order):
        for big in order[i + 1:]:
            if big % k == 0:
                low, high = arrays[names[k]], arrays[names[big]]
                bad = np.flatnonzero(low > high + ORDER_TOLERANCE * (1 + np.abs(high)))
                if len(bad):
                    return (f"holds results no evaluation gives: {names[k]} {low[bad[0]]:.6g} above "
                            f"{names[big]} {high[bad[0]]:.6g} in row {bad[0]}")
    start = batch_size * random.SystemRandom().randrange(-(-rows // batch_size))
    chunk = _chunk(source, n_samples, batch_size, memory_mb)
    logw = array_module(x).empty((n_samples, batch_size), dtype=np.float64)
    again = _batch(source, params, x, start, batch_size, n_samples, seed, ks, chunk, logw)
    for name, values in again.items():
        if not np.array_equal(to_host(values), arrays[name][start:start + batch_size]):
            return (f"holds results that differ from a recomputation of rows {start}-"
                    f"{min(start + batch_size, rows) - 1} ({name}): altered, or computed elsewhere (another "
                    "device or gvae version draws other noise)")
    return None
