"""Training loop: epochs of Adam steps on the negative ELBO, with validation, checkpoints and metrics.

Output folder (docs/api.md, section 5): ``config.json``, ``metrics.jsonl`` (one object per epoch),
``checkpoint.npz`` (after every epoch) and, at the end, ``summary.json``.

Device: ``Trainer(..., device=)`` puts the training and evaluation data, the parameters, the gradient
buffer (into whose views value_and_grad writes the gradients) and Adam's moments on one device at the
start; from then on a step draws its noise with the device's own generator and computes there. The host
reads two things per step: the squared gradient norm (a host float from ``kernels.sum_squares``, which
decides whether the step is skipped and by how much it is clipped) and one small vector holding the loss
and the three reported batch means (the non-finite check and the step's result). Checkpoints and metrics
are written from host copies at epoch ends; the configuration names no device, so a run may resume on
another.

Randomness: the parameters are initialised on the host from ``seed`` (the same model on every device);
all an epoch draws (binarisation or dequantisation, data order, noise) comes from a generator of the
device created at the epoch's start from (seed, epoch). Checkpoints are written at epoch ends, so a
resumed run draws exactly what the uninterrupted run drew, on a device of the same kind.
"""
import dataclasses
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import kernels
from ..autodiff import value_and_grad
from ..io.files import read_json, read_jsonl, write_json, write_jsonl
from ..kernels import array_module, device_module, generator, to_device, to_host
from ..model.objectives import training_loss
from . import checkpoint, rundir
from .adam import Adam
from .checkpoint import config_of
from .config import RESUMABLE, SCHEDULES
from .evaluate import dataset_elbo
from .memory import check_training
from .runs import EVAL_SEED, bits_per_dim, build_model, fixed_eval_sets

# The second word of an epoch's seed (seed, EPOCH_STREAM, epoch): not 0, since a SeedSequence pads its
# entropy with zeros, so (seed, 0, 0) would give the initialisation's stream (seeded with seed alone).
EPOCH_STREAM = 1


def batches(n, batch_size, rng):
    """Yield index arrays of length ``batch_size`` (the last may be shorter) that together cover
    ``0..n-1`` once, in random order, on ``rng``'s device: the order is the argsort of n uniform draws,
    which every device's generator makes."""
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n >= 0 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    order = rng.random(n).argsort()
    return (order[i:i + batch_size] for i in range(0, n, batch_size))


class TrainingStopped(RuntimeError):
    """Training went wrong and stopped before its last epoch; the message says what went wrong and which
    checkpoint (always one of a healthy epoch) the run resumes from."""


class NonFiniteError(TrainingStopped):
    """Too many steps in a row, or every step of an epoch, had a non-finite loss or gradient."""


class DivergedError(TrainingStopped):
    """After an epoch the validation ELBO or the parameters were not finite, or the validation ELBO fell
    far below the untrained model's (by more than the untrained model's own magnitude)."""


def data_fingerprint(train_x, data):
    """SHA-256 of the training images a run uses (after its limit) and of the raw validation and test
    images: a resumed run must see the data it was trained on."""
    digest = hashlib.sha256()
    for a in (train_x, data["valid"][0], data["test"][0]):
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.data)
    return digest.hexdigest()


def resume_conflicts(out, given):
    """The settings in ``given`` (field name -> value, as a user asked for them) that differ from the
    run's own configuration and may not change on resume: a list of (name, given, the run's value), the
    values as the configuration holds them (lists for several values, one value as itself)."""
    path = Path(out) / "checkpoint.npz"
    run = config_of(path, checkpoint.load(path)[1]) if path.is_file() else _configuration_file(out)
    try:
        asked = dataclasses.replace(run, **given)
    except ValueError:
        asked = None
    return [(name, _listed(value if asked is None else getattr(asked, name)), _listed(getattr(run, name)))
            for name, value in sorted(given.items())
            if name not in RESUMABLE and (asked is None or getattr(asked, name) != getattr(run, name))]


def _configuration_file(out):
    """The TrainConfig in the config.json of the run in ``out``, a run without a checkpoint (one stopped
    before its first, or a finished one kept for its results: gvae.sweep.state.training)."""
    path = Path(out) / "config.json"
    try:
        meta = {"config": read_json(path)}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: the run has no checkpoint, and its configuration cannot be read ({e})") from None
    return config_of(path, meta)


def _finished_metrics(path, epochs):
    """The rows of metrics.jsonl (``path``) of the first ``epochs`` epochs, those a checkpoint holds (rows
    of later epochs, written before a stop that kept an earlier checkpoint, are left out); ValueError
    naming the file when it lacks one of them."""
    try:
        rows = read_jsonl(path)
    except FileNotFoundError:
        rows = []
    numbers = [row.get("epoch") if isinstance(row, dict) else None for row in rows[:epochs]]
    if numbers != list(range(1, epochs + 1)):
        held = f"{len(rows)} rows" + (f", not numbered 1 to {epochs}" if len(rows) >= epochs else "")
        raise ValueError(f"{path} does not hold one row for each of the {epochs} epochs of the run's checkpoint "
                         f"({held}): it was emptied, cut short or damaged, so the run cannot be continued with its "
                         "metrics; replace it with --overwrite, or train a new run (another --out)")
    return rows[:epochs]


def _stamps(folder):
    """What identifies the config.json and checkpoint.npz in ``folder`` (None for one absent): a trainer
    continues a run only if they are still those it read when it takes the folder's lock."""
    stamps = []
    for name in ("config.json", "checkpoint.npz"):
        try:
            info = (Path(folder) / name).stat()
        except FileNotFoundError:
            stamps.append(None)
        else:
            stamps.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(stamps)


def _listed(value):
    """A configuration value with its tuples as lists (as config.json shows it)."""
    return [_listed(v) for v in value] if isinstance(value, (tuple, list)) else value


def _duration(seconds):
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min" if hours else (f"{m} min {s:02d} s" if m else f"{s} s")


def _first_non_finite(loss, grads):
    """What was not finite in a skipped step (reads the gradients back: only on this error path)."""
    if not math.isfinite(loss):
        return "the loss"
    for name, g in grads.items():
        if not bool(array_module(g).isfinite(g).all()):
            return f"the gradient of {name}"
    return "the gradient norm"


class Trainer:
    """Holds a model, its parameters, the optimiser and the random state of one run, on one device.

    ``Trainer(config, data, out, device=...)`` starts a run (``data`` holds host arrays, as
    :func:`gvae.io.mnist.load_mnist` returns them); :meth:`resume` continues one from its folder exactly
    where its last checkpoint left it (parameters, Adam state, epoch, best model)."""

    def __init__(self, config, data, out, progress=True, quiet=False, device="cpu", overwrite=False):
        self.xp = device_module(device)  # first: an unavailable device is refused before any work
        self.device = device
        self.config = config
        self.out = rundir.run_path(out)
        self.overwrite = overwrite
        self.resumed, self.resumed_with = False, {}
        self.progress = progress and not quiet
        self.quiet = quiet
        train_x = data["train"][0]
        if config.limit is not None:
            train_x = train_x[:config.limit]
        self.model = build_model(config, train_x.shape[1])
        # Before any array of the model's size is made: sizes beyond the machine are refused, naming the flags.
        check_training(self.model, config.batch_size, config.samples * config.iw_samples, len(train_x))
        for split in ("train", "valid", "test"):
            self.model.likelihood.check(data[split][0])
        self.data_sha256 = data_fingerprint(train_x, data)
        self.train_x = to_device(np.ascontiguousarray(train_x, dtype=self.model.dtype), device)
        self.valid_x, self.test_x = (to_device(x, device) for x in fixed_eval_sets(data, self.model))
        self.params = self.model.new_params(np.random.default_rng(config.seed), train_x).on(device)
        self.optimizer = Adam(self.params.flat, lr=config.lr, clip_norm=config.clip_norm)
        self.grad_flat = self.xp.zeros_like(self.params.flat)
        self.step_fn = value_and_grad(training_loss, has_aux=True, out=self.params.unflatten(self.grad_flat))
        self.metrics = []
        self.epoch = 0
        self.rng = self.epoch_generator(0)
        self.bad_steps = 0
        self.skipped_steps = 0
        self.best_flat = self.params.flat.copy()
        self.best_valid = -math.inf
        self.best_epoch = 0
        self.initial_valid = None  # the untrained model's validation ELBO, the yardstick of divergence
        self.saved_epoch = 0       # the epoch of the checkpoint on disk (0: none)
        self.read_from = None      # _stamps of the run files this trainer read or wrote last

    @classmethod
    def resume(cls, out, data, progress=True, quiet=False, device="cpu", **changes):
        """Continue the run in ``out`` from its checkpoint, with its own configuration, on ``device``
        (whichever the run was trained on); a run stopped before its first checkpoint (a config.json
        alone) starts over from epoch 0 with its configuration. ``changes`` may set the settings named in
        ``config.RESUMABLE`` (a new total of ``epochs``, no fewer than the run has done, ``lr``, ...; None
        keeps the run's); the first epoch's metrics record them as ``resumed_with``. Refuses data other
        than the run's, and a metrics.jsonl without a row for each epoch done."""
        unknown = sorted(set(changes) - set(RESUMABLE))
        if unknown:
            raise ValueError(f"only {', '.join(RESUMABLE)} may change when a run is resumed, not {', '.join(unknown)}")
        folder = rundir.check(out, resume=True)
        read_from = _stamps(folder)  # before reading: a file replaced from here on is seen in fit
        path = folder / "checkpoint.npz"
        if path.is_file():
            arrays, meta = checkpoint.load(path, need=checkpoint.RESUME)
            run = config_of(path, meta)
        else:
            arrays, meta, run = None, {"epoch": 0}, _configuration_file(folder)
        done = meta["epoch"]
        changes = {k: v for k, v in changes.items() if v is not None and getattr(run, k) != v}
        if changes.get("epochs", done) < done:
            raise ValueError(f"{out} has done {done} epochs, more than the {changes['epochs']} asked for (--epochs); "
                             f"give at least {done}, or leave --epochs out to train to the run's own {run.epochs}")
        metrics = _finished_metrics(folder / "metrics.jsonl", done)
        self = cls(dataclasses.replace(run, **changes), data, out, progress, quiet, device)
        self.metrics, self.read_from = metrics, read_from
        self.resumed, self.resumed_with = True, changes
        if arrays is None:
            return self
        if meta.get("data_sha256") not in (None, self.data_sha256):
            raise ValueError(f"{out} was trained on other data than the data given now (SHA-256 "
                             f"{meta['data_sha256'][:16]}... against {self.data_sha256[:16]}...); resume it "
                             "with the data it was trained on (--data)")
        if {k: tuple(v) for k, v in meta["param_shapes"].items()} != self.params.shapes:
            raise ValueError(f"{out}/checkpoint.npz holds parameters of other shapes than its config.json")
        self.params.flat[...] = to_device(arrays["params"], device)
        self.best_flat[...] = to_device(arrays["best_params"], device)
        self.optimizer.load_state(arrays)
        self.epoch, self.skipped_steps = meta["epoch"], meta["skipped_steps"]
        self.best_valid, self.best_epoch = meta["best_valid_elbo"], meta["best_epoch"]
        self.bad_steps = meta.get("bad_steps", 0)
        self.initial_valid = meta.get("initial_valid_elbo")
        self.saved_epoch = self.epoch
        return self

    def epoch_generator(self, epoch):
        """The device's generator of all that epoch ``epoch`` (from 0) draws, a function of (seed, epoch)."""
        return generator(self.device, (self.config.seed, EPOCH_STREAM, epoch))

    def kl_weight(self, progress_in_epochs):
        """The rate's weight: beta (times 1 - alpha, InfoVAE's), raised linearly from 0 over the warm-up's
        epochs."""
        w, beta = self.config.warmup, self.config.beta * (1.0 - self.config.alpha)
        return beta if w == 0 else beta * min(1.0, progress_in_epochs / w)

    def step(self, x, kl_weight):
        """One Adam step on a batch x (B, n) on the trainer's device; returns the (bound, rec, kl) batch
        means as host floats, or None if the step was skipped."""
        cfg = self.config
        n_samples = cfg.iw_samples if cfg.iw_samples > 1 else cfg.samples
        eps = self.rng.standard_normal((n_samples, len(x), self.model.noise_size), dtype=self.model.dtype)
        mmd = None
        if cfg.mmd > 0:  # the prior's draws for the MMD, after the posterior's noise
            prior = self.rng.standard_normal((n_samples * len(x), self.model.layers[-1].size), dtype=self.model.dtype)
            mmd = (cfg.mmd, prior, cfg.mmd_kernel)
        (loss, aux), grads = self.step_fn(self.params.views, self.model, x, eps, cfg.kl, kl_weight,
                                          cfg.iw_samples > 1, cfg.target_rate, mmd)
        # The step's two reads from the device: the norm (skip? clip?), then the loss and the results.
        norm2 = kernels.sum_squares(self.grad_flat)
        loss, bound, rec, kl = to_host(self.xp.stack([loss, *aux])).tolist()
        if not (math.isfinite(loss) and math.isfinite(norm2)):
            self.bad_steps += 1
            self.skipped_steps += 1
            if self.bad_steps >= cfg.max_bad_steps:
                raise NonFiniteError(
                    f"training stopped: {self.bad_steps} steps in a row had a non-finite loss or gradient "
                    f"(first non-finite quantity in the last one: {_first_non_finite(loss, grads)}, in epoch "
                    f"{self.epoch + 1}); {self.last_good()}")
            return None
        self.bad_steps = 0
        self.optimizer.update(self.grad_flat, norm=math.sqrt(norm2))
        return bound, rec, kl

    def run_epoch(self):
        cfg = self.config
        start = time.perf_counter()
        self.optimizer.lr = SCHEDULES[cfg.schedule](self.epoch, cfg.lr)
        self.rng = self.epoch_generator(self.epoch)
        x_all = self.model.likelihood.prepare(self.train_x, self.rng)  # redrawn every epoch
        n = len(x_all)
        n_batches = -(-n // cfg.batch_size)
        sums = np.zeros(3)
        seen = 0
        bar = tqdm(total=n_batches, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=not self.progress,
                   leave=False, file=sys.stderr)
        for i, idx in enumerate(batches(n, cfg.batch_size, self.rng)):
            result = self.step(x_all[idx], self.kl_weight(self.epoch + i / n_batches))
            bar.update(1)
            if result is None:
                continue
            sums += np.array(result) * len(idx)
            seen += len(idx)
            bar.set_postfix(bound=f"{sums[0] / seen:.2f}")
        bar.close()
        if seen == 0:
            raise NonFiniteError(f"training stopped: every step of epoch {self.epoch + 1} had a non-finite loss or "
                                 f"gradient; {self.last_good()}")
        self.epoch += 1
        train_seconds = time.perf_counter() - start
        valid = self.validation_elbo()
        if valid > self.best_valid:
            self.best_valid, self.best_epoch = valid, self.epoch
            self.best_flat[...] = self.params.flat
        bound, rec, kl = sums / max(seen, 1)
        offset = self.model.likelihood.nats_offset()  # nats of the 8-bit data for continuous likelihoods
        bound, rec = bound + offset, rec + offset
        row = {"epoch": self.epoch, "train_elbo": rec - kl, "train_bound": bound, "train_rec": rec,
               "train_kl": kl, "valid_elbo": valid, "seconds": train_seconds,
               "seconds_with_eval": time.perf_counter() - start, "skipped_steps": self.skipped_steps,
               "kl_weight": self.kl_weight(self.epoch), "lr": self.optimizer.lr}
        if self.resumed_with and self.epoch == self.saved_epoch + 1:
            row["resumed_with"] = dict(self.resumed_with)
        self.metrics.append(row)
        return row

    def last_good(self):
        """Where the run stands on disk after a failure, and how to go on from there."""
        lr = self.optimizer.lr / 10
        if self.saved_epoch == 0:
            return (f"no epoch finished, so there is no checkpoint: start it again with a lower learning rate: "
                    f"gvae train --resume --out {self.out} --lr {lr:g}")
        return (f"the last good checkpoint is {self.out / 'checkpoint.npz'} (epoch {self.saved_epoch}); continue "
                f"from it with a lower learning rate: gvae train --resume --out {self.out} --lr {lr:g}")

    def validation_elbo(self):
        """The mean validation ELBO (nats per image) of the current parameters, with fixed noise."""
        return dataset_elbo(self.model, self.params.views, self.valid_x, generator(self.device, EVAL_SEED),
                            kl=self.config.kl)

    def check_health(self, row):
        """Raise DivergedError (metrics written, checkpoint not) if the epoch just run left the run unusable."""
        valid, init = row["valid_elbo"], self.initial_valid
        if not math.isfinite(valid):
            why = f"the validation ELBO is {valid}"
        elif not math.isfinite(kernels.sum_squares(self.params.flat)):
            why = "the parameters hold NaN or inf"
        elif init is not None and valid < init - max(abs(init), 1.0):
            why = f"the validation ELBO fell to {valid:.4g}, far below the untrained model's {init:.4g}"
        else:
            return
        write_jsonl(self.out / "metrics.jsonl", self.metrics)
        raise DivergedError(f"training diverged in epoch {self.epoch}: {why}; {self.last_good()}")

    def save(self):
        """Write checkpoint.npz (host copies of the device's arrays) and metrics.jsonl, each atomically."""
        arrays = {"params": to_host(self.params.flat), "best_params": to_host(self.best_flat),
                  **self.optimizer.state()}
        meta = {"config": dataclasses.asdict(self.config), "epoch": self.epoch,
                "param_shapes": self.params.shapes, "skipped_steps": self.skipped_steps,
                "bad_steps": self.bad_steps, "best_valid_elbo": self.best_valid, "best_epoch": self.best_epoch,
                "initial_valid_elbo": self.initial_valid, "data_sha256": self.data_sha256}
        write_jsonl(self.out / "metrics.jsonl", self.metrics)
        checkpoint.save(self.out / "checkpoint.npz", arrays, meta)
        self.saved_epoch = self.epoch
        self.read_from = _stamps(self.out)

    def fit(self):
        """Train until ``config.epochs`` epochs are done (or ``patience`` epochs pass without a better
        validation ELBO); returns the summary (also summary.json). Holds the run folder's lock throughout.

        After every epoch the run's health is checked before its checkpoint is written, so the checkpoint
        on disk is always one of a healthy epoch; a run that goes wrong raises a :class:`TrainingStopped`
        naming it. The test numbers use the parameters of the epoch with the best validation ELBO."""
        cfg = self.config
        # A run this trainer resumed, or whose checkpoint it wrote itself, is continued; any other is refused.
        continuing = self.resumed or self.saved_epoch > 0
        with rundir.writer(self.out, resume=continuing, overwrite=self.overwrite and not continuing):
            if continuing and _stamps(self.out) != self.read_from:
                raise rundir.RunFolderError(f"{self.out} was written by another gvae process after this one read "
                                            "its run; run the command again to continue the run as it is now")
            if self.resumed and self.epoch == self.saved_epoch and not self.quiet:
                changed = ", ".join(f"{name} {value}" for name, value in sorted(self.resumed_with.items()))
                print(f"resuming {self.out} from epoch {self.epoch} of {cfg.epochs}"
                      + (f" with {changed}" if changed else "")
                      + ("" if self.epoch else " (no epoch had finished: it starts over with its configuration)"),
                      flush=True)
            write_json(self.out / "config.json", dataclasses.asdict(cfg))
            self.read_from = _stamps(self.out)
            if self.initial_valid is None and self.epoch == 0:
                self.initial_valid = self.validation_elbo()
            first, started = self.epoch, time.perf_counter()
            stopped_early = False
            while self.epoch < cfg.epochs:
                row = self.run_epoch()
                self.check_health(row)
                self.save()
                if not self.quiet:
                    left = (time.perf_counter() - started) / (self.epoch - first) * (cfg.epochs - self.epoch)
                    print(f"epoch {row['epoch']}/{cfg.epochs}  train bound {row['train_bound']:.3f}  valid ELBO "
                          f"{row['valid_elbo']:.3f} nats/image  {row['seconds']:.1f} s"
                          + (f"  about {_duration(left)} left" if self.epoch < cfg.epochs else ""), flush=True)
                if cfg.patience and self.epoch - self.best_epoch >= cfg.patience:
                    stopped_early = True
                    if not self.quiet:
                        print(f"stopped early: no better validation ELBO for {cfg.patience} epochs (best: epoch "
                              f"{self.best_epoch})", flush=True)
                    break
            best = self.params.unflatten(self.best_flat)
            test = dataset_elbo(self.model, best, self.test_x, generator(self.device, EVAL_SEED), kl=cfg.kl)
            summary = {"test_elbo": test, **bits_per_dim(self.model, {"test_elbo": test}),
                       "best_epoch": self.best_epoch, "best_valid_elbo": self.best_valid, "epochs": self.epoch,
                       "stopped_early": stopped_early, "skipped_steps": self.skipped_steps,
                       "n_train": len(self.train_x), "n_parameters": int(self.params.size),
                       "seconds_per_epoch": float(np.mean([m["seconds"] for m in self.metrics]))
                       if self.metrics else None}
            write_json(self.out / "summary.json", summary)
        return summary


def train(config, data, out, progress=True, quiet=False, device="cpu", overwrite=False):
    """Train a VAE described by ``config`` on ``data`` (as returned by :func:`gvae.io.mnist.load_mnist`)
    on ``device``, writing into the new run folder ``out`` (an existing run there is refused unless
    ``overwrite``); returns the summary dict."""
    return Trainer(config, data, out, progress=progress, quiet=quiet, device=device, overwrite=overwrite).fit()
