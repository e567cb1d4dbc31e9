"""Training loop: epochs of Adam steps on the negative ELBO, with validation, checkpoints and metrics.

Output folder (docs/api.md, section 5): ``config.json``, ``metrics.jsonl`` (one object per epoch),
``checkpoint.npz`` (after every epoch) and, at the end, ``summary.json``.
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
from ..model.objectives import training_loss
from . import checkpoint
from .adam import Adam
from .config import SCHEDULES, TrainConfig
from .evaluate import dataset_elbo
from .runs import EVAL_SEED, bits_per_dim, build_model, fixed_eval_sets

def batches(n, batch_size, rng, shuffle=True):
    """Yield int64 index arrays of length ``batch_size`` (the last may be
    shorter) that together cover ``0..n-1`` once, in random order if ``shuffle``."""
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n >= 0 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    order = rng.permutation(n) if shuffle else np.arange(n)
    return (order[i:i + batch_size] for i in range(0, n, batch_size))


class NonFiniteError(RuntimeError):
    """Training met too many non-finite losses or gradients in a row."""


def _first_non_finite(loss, grads):
    if not math.isfinite(loss):
        return "the loss"
    for name, g in grads.items():
        if not np.isfinite(g).all():
            return f"the gradient of {name}"
    return "the gradient norm"


class Trainer:
    """Holds a model, its parameters, the optimiser and the random state of one run.

    ``Trainer(config, data, out)`` starts a run; :meth:`resume` continues one from its folder exactly
    where its last checkpoint left it (parameters, Adam state, epoch, random state, best model)."""

    def __init__(self, config, data, out, progress=True, quiet=False):
        self.config = config
        self.out = Path(out)
        self.progress = progress and not quiet
        self.quiet = quiet
        dtype = np.dtype(config.dtype)
        train_x = data["train"][0]
        if config.limit is not None:
            train_x = train_x[:config.limit]
        self.train_x = np.ascontiguousarray(train_x, dtype=dtype)
        self.model = build_model(config, self.train_x.shape[1])
        for split in ("train", "valid", "test"):
            self.model.likelihood.check(data[split][0])
        self.valid_x, self.test_x = fixed_eval_sets(data, self.model)
        self.rng = np.random.default_rng(config.seed)
        self.params = self.model.new_params(self.rng)
        self.optimizer = Adam(self.params.flat, lr=config.lr, clip_norm=config.clip_norm)
        self.grad_flat = np.empty_like(self.params.flat)
        self.step_fn = value_and_grad(training_loss, has_aux=True)
        self.metrics = []
        self.epoch = 0
        self.bad_steps = 0
        self.skipped_steps = 0
        self.best_flat = self.params.flat.copy()
        self.best_valid = -np.inf
        self.best_epoch = 0

    @classmethod
    def resume(cls, out, data, progress=True, quiet=False, epochs=None):
        """Continue the run in ``out`` from its checkpoint (optionally to a new total of ``epochs``)."""
        arrays, meta = checkpoint.load(Path(out) / "checkpoint.npz")
        settings = dict(meta["config"])
        if epochs is not None:
            settings["epochs"] = epochs
        self = cls(TrainConfig(**settings), data, out, progress, quiet)
        if {k: tuple(v) for k, v in meta["param_shapes"].items()} != self.params.shapes:
            raise ValueError(f"{out}/checkpoint.npz holds parameters of other shapes than its config.json")
        self.params.flat[...] = arrays["params"]
        self.best_flat[...] = arrays["best_params"]
        self.optimizer.load_state(arrays)
        self.rng.bit_generator.state = meta["rng"]
        self.epoch, self.skipped_steps = meta["epoch"], meta["skipped_steps"]
        self.best_valid, self.best_epoch = meta["best_valid_elbo"], meta["best_epoch"]
        self.metrics = read_jsonl(self.out / "metrics.jsonl")[:self.epoch]
        return self

    def kl_weight(self, progress_in_epochs):
        w = self.config.warmup
        return 1.0 if w == 0 else min(1.0, progress_in_epochs / w)

    def step(self, x, kl_weight):
        """One Adam step on a batch x (B, n); returns (bound, rec, kl) batch means, or None if skipped."""
        cfg = self.config
        n_samples = cfg.iw_samples if cfg.iw_samples > 1 else cfg.samples
        eps = self.rng.standard_normal((n_samples, len(x), cfg.latent), dtype=self.model.dtype)
        (loss, (bound, rec, kl)), grads = self.step_fn(self.params.views, self.model, x, eps, cfg.kl, kl_weight,
                                                       cfg.iw_samples > 1)
        self.params.flatten(grads, self.grad_flat)
        norm2 = kernels.sum_squares(self.grad_flat)
        loss = float(loss)
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
        return float(bound), float(rec), float(kl)

    def run_epoch(self):
        cfg = self.config
        start = time.perf_counter()
        self.optimizer.lr = SCHEDULES[cfg.schedule](self.epoch, cfg.lr)
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
        valid = dataset_elbo(self.model, self.params.views, self.valid_x, np.random.default_rng(EVAL_SEED),
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
        """Write checkpoint.npz and metrics.jsonl (each atomically)."""
        arrays = {"params": self.params.flat, "best_params": self.best_flat, **self.optimizer.state()}
        meta = {"config": dataclasses.asdict(self.config), "epoch": self.epoch, "rng": self.rng.bit_generator.state,
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
        test = dataset_elbo(self.model, best, self.test_x, np.random.default_rng(EVAL_SEED), kl=cfg.kl)
        summary = {"test_elbo": test, **bits_per_dim(self.model, {"test_elbo": test}), "best_epoch": self.best_epoch, "best_valid_elbo": self.best_valid,
                   "epochs": self.epoch, "skipped_steps": self.skipped_steps, "n_train": len(self.train_x),
                   "seconds_per_epoch": float(np.mean([m["seconds"] for m in self.metrics])),
                   "n_parameters": int(self.params.size)}
        write_json(self.out / "summary.json", summary)
        return summary


def train(config, data, out, progress=True, quiet=False):
    """Train a VAE described by ``config`` on ``data`` (as returned by :func:`gvae.io.mnist.load_mnist`),
    writing into ``out``; returns the summary dict."""
    return Trainer(config, data, out, progress=progress, quiet=quiet).fit()
