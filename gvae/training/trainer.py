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
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import kernels
from ..autodiff import value_and_grad
from ..io.files import read_jsonl, write_json, write_jsonl
from ..kernels import array_module, device_module, generator, to_device, to_host
from ..model.objectives import training_loss
from . import checkpoint
from .adam import Adam
from .config import SCHEDULES, TrainConfig
from .evaluate import dataset_elbo
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


class NonFiniteError(RuntimeError):
    """Training met too many non-finite losses or gradients in a row."""


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

    def __init__(self, config, data, out, progress=True, quiet=False, device="cpu"):
        self.xp = device_module(device)  # first: an unavailable device is refused before any work
        self.device = device
        self.config = config
        self.out = Path(out)
        self.progress = progress and not quiet
        self.quiet = quiet
        train_x = data["train"][0]
        if config.limit is not None:
            train_x = train_x[:config.limit]
        self.model = build_model(config, train_x.shape[1])
        for split in ("train", "valid", "test"):
            self.model.likelihood.check(data[split][0])
        self.train_x = to_device(np.ascontiguousarray(train_x, dtype=self.model.dtype), device)
        self.valid_x, self.test_x = (to_device(x, device) for x in fixed_eval_sets(data, self.model))
        self.params = self.model.new_params(np.random.default_rng(config.seed)).on(device)
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

    @classmethod
    def resume(cls, out, data, progress=True, quiet=False, epochs=None, device="cpu"):
        """Continue the run in ``out`` from its checkpoint (optionally to a new total of ``epochs``), on
        ``device`` (whichever the run was trained on)."""
        arrays, meta = checkpoint.load(Path(out) / "checkpoint.npz")
        settings = dict(meta["config"])
        if epochs is not None:
            settings["epochs"] = epochs
        self = cls(TrainConfig(**settings), data, out, progress, quiet, device)
        if {k: tuple(v) for k, v in meta["param_shapes"].items()} != self.params.shapes:
            raise ValueError(f"{out}/checkpoint.npz holds parameters of other shapes than its config.json")
        self.params.flat[...] = to_device(arrays["params"], device)
        self.best_flat[...] = to_device(arrays["best_params"], device)
        self.optimizer.load_state(arrays)
        self.epoch, self.skipped_steps = meta["epoch"], meta["skipped_steps"]
        self.best_valid, self.best_epoch = meta["best_valid_elbo"], meta["best_epoch"]
        self.metrics = read_jsonl(self.out / "metrics.jsonl")[:self.epoch]
        return self

    def epoch_generator(self, epoch):
        """The device's generator of all that epoch ``epoch`` (from 0) draws, a function of (seed, epoch)."""
        return generator(self.device, (self.config.seed, EPOCH_STREAM, epoch))

    def kl_weight(self, progress_in_epochs):
        w = self.config.warmup
        return 1.0 if w == 0 else min(1.0, progress_in_epochs / w)

    def step(self, x, kl_weight):
        """One Adam step on a batch x (B, n) on the trainer's device; returns the (bound, rec, kl) batch
        means as host floats, or None if the step was skipped."""
        cfg = self.config
        n_samples = cfg.iw_samples if cfg.iw_samples > 1 else cfg.samples
        eps = self.rng.standard_normal((n_samples, len(x), cfg.latent), dtype=self.model.dtype)
        (loss, aux), grads = self.step_fn(self.params.views, self.model, x, eps, cfg.kl, kl_weight,
                                          cfg.iw_samples > 1)
        # The step's two reads from the device: the norm (skip? clip?), then the loss and the results.
        norm2 = kernels.sum_squares(self.grad_flat)
        loss, bound, rec, kl = to_host(self.xp.stack([loss, *aux])).tolist()
        if not (math.isfinite(loss) and math.isfinite(norm2)):
            self.bad_steps += 1
            self.skipped_steps += 1
            if self.bad_steps >= cfg.max_bad_steps:
                last = (f"{self.out / 'checkpoint.npz'} (epoch {self.epoch})" if self.epoch
                        else "none (no epoch finished)")
                raise NonFiniteError(
                    f"training stopped: {self.bad_steps} steps in a row had a non-finite loss or gradient "
                    f"(first non-finite quantity in the last one: {_first_non_finite(loss, grads)}, in epoch "
                    f"{self.epoch + 1}); the last good checkpoint is {last}")
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
        self.epoch += 1
        train_seconds = time.perf_counter() - start
        valid = dataset_elbo(self.model, self.params.views, self.valid_x, generator(self.device, EVAL_SEED),
                             kl=cfg.kl)
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
        self.metrics.append(row)
        return row

    def save(self):
        """Write checkpoint.npz (host copies of the device's arrays) and metrics.jsonl, each atomically."""
        arrays = {"params": to_host(self.params.flat), "best_params": to_host(self.best_flat),
                  **self.optimizer.state()}
        meta = {"config": dataclasses.asdict(self.config), "epoch": self.epoch,
                "param_shapes": self.params.shapes, "skipped_steps": self.skipped_steps,
                "best_valid_elbo": self.best_valid, "best_epoch": self.best_epoch}
        write_jsonl(self.out / "metrics.jsonl", self.metrics)
        checkpoint.save(self.out / "checkpoint.npz", arrays, meta)

    def fit(self):
        """Train until ``config.epochs`` epochs are done; returns the summary (also summary.json).

        The test numbers use the parameters of the epoch with the best validation ELBO."""
        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "config.json", dataclasses.asdict(cfg))
        while self.epoch < cfg.epochs:
            row = self.run_epoch()
            self.save()
            if not self.quiet:
                print(f"epoch {row['epoch']:4d}  train {row['train_bound']:9.3f}  valid ELBO "
                      f"{row['valid_elbo']:9.3f}  {row['seconds']:6.1f} s", flush=True)
        best = self.params.unflatten(self.best_flat)
        test = dataset_elbo(self.model, best, self.test_x, generator(self.device, EVAL_SEED), kl=cfg.kl)
        summary = {"test_elbo": test, **bits_per_dim(self.model, {"test_elbo": test}), "best_epoch": self.best_epoch, "best_valid_elbo": self.best_valid,
                   "epochs": self.epoch, "skipped_steps": self.skipped_steps, "n_train": len(self.train_x),
                   "seconds_per_epoch": float(np.mean([m["seconds"] for m in self.metrics])),
                   "n_parameters": int(self.params.size)}
        write_json(self.out / "summary.json", summary)
        return summary


def train(config, data, out, progress=True, quiet=False, device="cpu"):
    """Train a VAE described by ``config`` on ``data`` (as returned by :func:`gvae.io.mnist.load_mnist`)
    on ``device``, writing into ``out``; returns the summary dict."""
    return Trainer(config, data, out, progress=progress, quiet=quiet, device=device).fit()
