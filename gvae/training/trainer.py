"""Training loop: epochs of Adam steps on the negative ELBO (or, with task "classify", on the deep
variational information bottleneck's loss, :mod:`gvae.model.vib`), with validation, checkpoints and metrics.

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
import contextlib
import dataclasses
import hashlib
import math
import time

import numpy as np

from .. import kernels
from ..autodiff import value_and_grad
from ..kernels import array_module, device_module, generator, to_device, to_host
from ..kernels.threads import cores_unless_set
from ..model.objectives import training_loss
from ..model.vib import vib_loss
from . import rundir
from .batching import batches, epoch_batches
from .classify import TEST_SAMPLES, classifier_scores, labels_of
from .config import RESUMABLE, learning_rate
from .evaluate import dataset_elbo
from .events import Console, progress_bar, tell
from .memory import check_training
from .runfiles import RunFiles, read_run
from .runs import EVAL_SEED, bits_per_dim, build_model, fixed_eval_sets
from .state import TrainingState

# The second word of an epoch's seed (seed, EPOCH_STREAM, epoch): not 0, since a SeedSequence pads its
# entropy with zeros, so (seed, 0, 0) would give the initialisation's stream (seeded with seed alone).
EPOCH_STREAM = 1


class TrainingStopped(RuntimeError):
    """Training went wrong and stopped before its last epoch; the message says what went wrong and which
    checkpoint (always one of a healthy epoch) the run resumes from."""


class NonFiniteError(TrainingStopped):
    """Too many steps in a row, or every step of an epoch, had a non-finite loss or gradient."""


class DivergedError(TrainingStopped):
    """After an epoch the validation ELBO or the parameters were not finite, or the validation ELBO fell
    far below the untrained model's (by more than the untrained model's own magnitude)."""


def data_fingerprint(train_x, data, labels=()):
    """SHA-256 of the training images a run uses (after its limit) and of the raw validation and test
    images, then of the arrays ``labels`` (a classify run's, train after its limit, valid, test): a resumed
    run must see the data it was trained on."""
    digest = hashlib.sha256()
    for a in (train_x, data["valid"][0], data["test"][0], *labels):
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.data)
    return digest.hexdigest()


def _first_non_finite(loss, grads):
    """What was not finite in a skipped step (reads the gradients back: only on this error path)."""
    if not math.isfinite(loss):
        return "the loss"
    for name, g in grads.items():
        if not bool(array_module(g).isfinite(g).all()):
            return f"the gradient of {name}"
    return "the gradient norm"


def _no_floating_point_warnings():
    """Within it, NumPy's warnings of overflows, invalid values and divisions by zero are not shown. The loop
    checks every step's loss and gradient and every epoch's health itself and names what was not finite in
    its own message; NumPy's warnings of the same values came before it, once per line of code, even under
    --quiet. np.errstate: the calling thread's own state (a context variable), which gvae's workers take
    for the tasks they run for it; a warnings filter would be the whole process's, for every thread."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")


class Trainer:
    """One run on one device: its configuration, model and data, its :class:`TrainingState`, and the loop
    that trains it. The loop only trains; what is written or printed along the way is up to the listeners
    (:mod:`events`) that :meth:`fit` is given.

    ``Trainer(config, data, out, device=...)`` starts a run (``data`` holds host arrays, as
    :func:`gvae.io.mnist.load_mnist` returns them); :meth:`resume` continues one from its folder with the
    state its last checkpoint holds (parameters, Adam state, epoch, best model)."""

    def __init__(self, config, data, out, progress=True, quiet=False, device="cpu", overwrite=False, saved=None):
        self.xp = device_module(device)  # first: an unavailable device is refused before any work
        self.device = device
        self.config = config
        self.out = rundir.run_path(out)
        self.overwrite = overwrite
        self.progress = progress and not quiet
        self.quiet = quiet
        train_x = data["train"][0]
        if config.limit is not None:
            train_x = train_x[:config.limit]
        self.classify = config.task == "classify"
        # The validation number whose collapse is divergence (the untrained model's is the yardstick). A
        # classifier's best epoch is picked by its validation error instead (:meth:`score`): the objective
        # peaks early (epoch 18 of 50 on MNIST, 1.50% test error, against 1.42% at epoch 50) while the
        # error still falls, its log q(y|z) spent on the few images the classifier gets confidently wrong.
        self.health_name, self.health_label = (("valid_objective", "validation objective") if self.classify
                                               else ("valid_elbo", "validation ELBO"))
        self.score_label = "validation error" if self.classify else "validation ELBO"
        self.model = build_model(config, train_x.shape[1])
        # Before any array of the model's size is made: sizes beyond the machine are refused, naming the flags.
        check_training(self.model, config.batch_size, config.samples * config.iw_samples, len(train_x))
        if self.classify:
            train_y, valid_y, test_y = labels_of(data, config.classes)
            labels = (train_y[:len(train_x)], valid_y, test_y)
        else:
            for split in ("train", "valid", "test"):
                self.model.likelihood.check(data[split][0])
            labels = ()
        self.data_sha256 = data_fingerprint(train_x, data, labels)
        self.resumed, self.resumed_with = saved is not None, {}
        self.files = RunFiles(None if saved is None else saved.stamps)  # the listener that writes the folder
        if saved is not None and saved.arrays is not None:
            if saved.meta.get("data_sha256") not in (None, self.data_sha256):
                raise ValueError(f"{out} was trained on other data than the data given now (SHA-256 "
                                 f"{saved.meta['data_sha256'][:16]}... against {self.data_sha256[:16]}...); resume "
                                 "it with the data it was trained on (--data)")
            self.state = TrainingState.from_checkpoint(saved.arrays, saved.meta, self.model, config, device,
                                                       saved.metrics, where=saved.checkpoint)
        else:  # a new run, or one stopped before its first checkpoint (no metrics rows then)
            self.state = TrainingState.new(self.model, config, train_x, device)
        self.train_x = to_device(np.ascontiguousarray(train_x, dtype=self.model.dtype), device)
        if self.classify:  # the raw intensities, and the labels beside them
            self.valid_x, self.test_x = (to_device(np.ascontiguousarray(data[s][0], dtype=self.model.dtype), device)
                                         for s in ("valid", "test"))
            self.train_y, self.valid_y, self.test_y = (to_device(y, device) for y in labels)
        else:
            self.valid_x, self.test_x = (to_device(x, device) for x in fixed_eval_sets(data, self.model))
        self.grad_flat = self.xp.zeros_like(self.state.params.flat)
        self.step_fn = value_and_grad(vib_loss if self.classify else training_loss, has_aux=True,
                                      out=self.state.params.unflatten(self.grad_flat))
        self.rng = self.epoch_generator(self.state.epoch)
        self.saved_epoch = self.state.epoch  # the epoch of the checkpoint on disk (0: none)

    @property
    def continuing(self):
        """Whether this trainer goes on with the run in its folder: one it resumed, or whose checkpoint it
        wrote itself (any other run there is refused unless it was told to overwrite it)."""
        return self.resumed or self.saved_epoch > 0

    @property
    def params(self):
        """The run's :class:`FlatParams` (its state's)."""
        return self.state.params

    @property
    def optimizer(self):
        """The run's :class:`Adam` (its state's)."""
        return self.state.optimizer

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
        saved = read_run(out)
        done = saved.meta["epoch"]
        changes = {k: v for k, v in changes.items() if v is not None and getattr(saved.config, k) != v}
        if changes.get("epochs", done) < done:
            raise ValueError(f"{out} has done {done} epochs, more than the {changes['epochs']} asked for (--epochs); "
                             f"give at least {done}, or leave --epochs out to train to the run's own {saved.config.epochs}")
        self = cls(dataclasses.replace(saved.config, **changes), data, out, progress, quiet, device, saved=saved)
        self.resumed_with = changes
        return self

    def epoch_generator(self, epoch):
        """The device's generator of all that epoch ``epoch`` (from 0) draws, a function of (seed, epoch)."""
        return generator(self.device, (self.config.seed, EPOCH_STREAM, epoch))

    def kl_weight(self, progress_in_epochs):
        """The rate's weight: beta (times 1 - alpha, InfoVAE's), raised linearly from 0 over the warm-up's
        epochs."""
        w, beta = self.config.warmup, self.config.beta * (1.0 - self.config.alpha)
        return beta if w == 0 else beta * min(1.0, progress_in_epochs / w)

    def step(self, x, kl_weight, y=None):
        """One Adam step on a batch x (B, n) on the trainer's device (with its labels y (B,) in a classify
        run); returns the (bound, rec, kl) batch means as host floats (classify: the objective, mean
        log q(y|z), the rate), or None if the step was skipped."""
        cfg, state = self.config, self.state
        n_samples = cfg.iw_samples if cfg.iw_samples > 1 else cfg.samples
        eps = self.rng.standard_normal((n_samples, len(x), self.model.noise_size), dtype=self.model.dtype)
        if self.classify:
            args = (y, eps, cfg.kl, kl_weight)
        else:
            mmd = None
            if cfg.mmd > 0:  # the prior's draws for the MMD, after the posterior's noise
                prior = self.rng.standard_normal((n_samples * len(x), self.model.layers[-1].size),
                                                 dtype=self.model.dtype)
                mmd = (cfg.mmd, prior, cfg.mmd_kernel)
            args = (eps, cfg.kl, kl_weight, cfg.iw_samples > 1, cfg.target_rate, mmd)
        (loss, aux), grads = self.step_fn(state.params.views, self.model, x, *args)
        # The step's two reads from the device: the norm (skip? clip?), then the loss and the results.
        norm2 = kernels.sum_squares(self.grad_flat)
        loss, bound, rec, kl = to_host(self.xp.stack([loss, *aux])).tolist()
        if not (math.isfinite(loss) and math.isfinite(norm2)):
            state.bad_steps += 1
            state.skipped_steps += 1
            if state.bad_steps >= cfg.max_bad_steps:
                raise NonFiniteError(
                    f"training stopped: {state.bad_steps} steps in a row had a non-finite loss or gradient "
                    f"(first non-finite quantity in the last one: {_first_non_finite(loss, grads)}, in epoch "
                    f"{state.epoch + 1}); {self.last_good()}")
            return None
        state.bad_steps = 0
        state.optimizer.update(self.grad_flat, norm=math.sqrt(norm2))
        state.after_step()
        return bound, rec, kl

    def epoch_data(self):
        """The epoch's training batches as (x, y) pairs, drawn from the epoch's generator: a classify run's
        raw images with their labels, otherwise the observations made afresh every epoch (y None)."""
        if self.classify:
            return ((self.train_x[idx], self.train_y[idx])
                    for idx in batches(len(self.train_x), self.config.batch_size, self.rng))
        return ((x, None) for x in epoch_batches(self.train_x, self.model.likelihood, self.config.batch_size, self.rng))

    def run_epoch(self):
        """One epoch of steps, then the validation numbers (:meth:`validate`); returns its metrics row (also
        appended to the state's metrics)."""
        cfg, state = self.config, self.state
        start = time.perf_counter()
        state.optimizer.lr = learning_rate(cfg, state.epoch)
        self.rng = self.epoch_generator(state.epoch)
        n_batches = -(-len(self.train_x) // cfg.batch_size)
        sums = np.zeros(3)
        seen = 0
        # Off a terminal no bar: the Console's line per epoch says it there.
        bar = progress_bar(self.progress, n_batches, f"epoch {state.epoch + 1}/{cfg.epochs}", lines=False, leave=False)
        for i, (x, y) in enumerate(self.epoch_data()):
            result = self.step(x, self.kl_weight(state.epoch + i / n_batches), y)
            bar.update(1)
            if result is None:
                continue
            sums += np.array(result) * len(x)
            seen += len(x)
            bar.set_postfix({"objective" if self.classify else "bound": f"{sums[0] / seen:.2f}"})
        bar.close()
        if seen == 0:
            raise NonFiniteError(f"training stopped: every step of epoch {state.epoch + 1} had a non-finite loss or "
                                 f"gradient; {self.last_good()}")
        state.epoch += 1
        train_seconds = time.perf_counter() - start
        valid = self.validate()
        if self.score(valid) > state.best_valid:
            state.best_valid, state.best_epoch = self.score(valid), state.epoch
            state.best_flat[...] = state.evaluated_flat()
        bound, rec, kl = sums / max(seen, 1)
        if self.classify:
            train = {"train_objective": bound, "train_log_lik": rec, "train_rate": kl}
        else:
            offset = self.model.likelihood.nats_offset()  # nats of the 8-bit data for continuous likelihoods
            bound, rec = bound + offset, rec + offset
            train = {"train_elbo": rec - kl, "train_bound": bound, "train_rec": rec, "train_kl": kl}
        row = {"epoch": state.epoch, **train, **valid, "seconds": train_seconds,
               "seconds_with_eval": time.perf_counter() - start, "skipped_steps": state.skipped_steps,
               "kl_weight": self.kl_weight(state.epoch), "lr": state.optimizer.lr}
        if self.resumed_with and state.epoch == self.saved_epoch + 1:
            row["resumed_with"] = dict(self.resumed_with)
        state.metrics.append(row)
        return row

    def last_good(self):
        """Where the run stands on disk after a failure, and how to go on from there."""
        lr = self.state.optimizer.lr / 10
        if self.saved_epoch == 0:
            return (f"no epoch finished, so there is no checkpoint: start it again with a lower learning rate: "
                    f"gvae train --resume --out {self.out} --lr {lr:g}")
        return (f"the last good checkpoint is {self.out / 'checkpoint.npz'} (epoch {self.saved_epoch}); continue "
                f"from it with a lower learning rate: gvae train --resume --out {self.out} --lr {lr:g}")

    def validate(self):
        """The validation numbers of an epoch's metrics row: ``valid_elbo`` (:meth:`validation_elbo`), or in
        a classify run ``valid_objective``, ``valid_error`` and ``valid_rate`` (:meth:`classifier_scores`
        with 12 samples per image); of the parameters the run evaluates (with Polyak averaging, the average)."""
        if not self.classify:
            return {"valid_elbo": self.validation_elbo()}
        scores = self.scores(self.evaluated(), self.valid_x, self.valid_y)
        return {"valid_objective": scores["objective"], "valid_error": scores["error"], "valid_rate": scores["rate"]}

    def score(self, valid):
        """What picks the best epoch and stops a run early, the higher the better, from :meth:`validate`'s
        numbers: the validation ELBO, or a classify run's validation accuracy 1 - valid_error."""
        return 1.0 - valid["valid_error"] if self.classify else valid["valid_elbo"]

    def scores(self, params, x, y):
        """:func:`classify.classifier_scores` of a classify run's ``params`` on (x, y), with fixed noise."""
        return classifier_scores(self.model, params, x, y, generator(self.device, EVAL_SEED), self.config.beta)

    def evaluated(self):
        """Named views of the parameters the run evaluates (:meth:`TrainingState.evaluated_flat`)."""
        return self.state.params.unflatten(self.state.evaluated_flat())

    def validation_elbo(self):
        """The mean validation ELBO (nats per image) of the evaluated parameters, with fixed noise."""
        return dataset_elbo(self.model, self.evaluated(), self.valid_x, generator(self.device, EVAL_SEED),
                            kl=self.config.kl)

    def unhealthy(self, row):
        """Why the epoch just run (its metrics ``row``) left the run unusable, or None: a non-finite
        validation ELBO (classify: objective) or parameters, or one far below the untrained model's."""
        valid, init, what = row[self.health_name], self.state.initial_valid, self.health_label
        if not math.isfinite(valid):
            return f"the {what} is {valid}"
        if not math.isfinite(kernels.sum_squares(self.state.params.flat)):
            return "the parameters hold NaN or inf"
        if init is not None and valid < init - max(abs(init), 1.0):
            return f"the {what} fell to {valid:.4g}, far below the untrained model's {init:.4g}"
        return None

    def test_summary(self, stopped_early):
        """The run's results: the test ELBO of the best validation epoch's parameters (classify: the test
        error, rate, mean log q(y|z) and objective with 12 samples per image), and the loop's counts."""
        state, cfg = self.state, self.config
        best = state.params.unflatten(state.best_flat)
        counts = {"best_epoch": state.best_epoch, "epochs": state.epoch, "stopped_early": stopped_early,
                  "skipped_steps": state.skipped_steps, "n_train": len(self.train_x),
                  "n_parameters": int(state.params.size),
                  "seconds_per_epoch": float(np.mean([m["seconds"] for m in state.metrics])) if state.metrics else None}
        if self.classify:
            test = self.scores(best, self.test_x, self.test_y)
            return {"task": "classify", "test_error": test["error"], "test_rate": test["rate"],
                    "test_log_lik": test["log_lik"], "test_objective": test["objective"], "test_samples": TEST_SAMPLES,
                    "beta": cfg.beta, "best_valid_error": 1.0 - state.best_valid, **counts}
        test = dataset_elbo(self.model, best, self.test_x, generator(self.device, EVAL_SEED), kl=cfg.kl)
        return {"test_elbo": test, **bits_per_dim(self.model, {"test_elbo": test}),
                "best_valid_elbo": state.best_valid, **counts}

    def fit(self, events=None):
        """Train until ``config.epochs`` epochs are done (or ``patience`` epochs pass without a better
        validation ELBO, classify: error); returns the summary. ``events`` are the listeners (:class:`events.Events`) told
        of each point of the loop; by default this trainer's :class:`RunFiles` (the folder's files, under
        its lock) and, unless ``quiet``, a :class:`Console`.

        The run's health is checked after every epoch before the listeners hear of it, so a checkpoint
        written then is always one of a healthy epoch; a run that goes wrong raises a
        :class:`TrainingStopped` naming it. The test numbers use the parameters of the epoch with the best
        validation ELBO (classify: the lowest validation error)."""
        if events is None:
            events = [self.files] + ([] if self.quiet else [Console()])
        cfg, state = self.config, self.state
        with contextlib.ExitStack() as stack:
            # From Python as from the command: one kernel thread per core unless set_threads chose.
            stack.enter_context(cores_unless_set())
            stack.enter_context(_no_floating_point_warnings())
            for listener in events:
                stack.enter_context(listener.running(self))
            tell(events, "started", self)
            if state.initial_valid is None and state.epoch == 0:
                state.initial_valid = self.validate()[self.health_name]
            stopped_early = False
            while state.epoch < cfg.epochs:
                row = self.run_epoch()
                why = self.unhealthy(row)
                if why is not None:
                    tell(events, "diverged", self, why)
                    raise DivergedError(f"training diverged in epoch {state.epoch}: {why}; {self.last_good()}")
                tell(events, "epoch_end", self, row)
                if cfg.patience and state.epoch - state.best_epoch >= cfg.patience:
                    stopped_early = True
                    tell(events, "stopped_early", self)
                    break
            summary = self.test_summary(stopped_early)
            tell(events, "finished", self, summary)
        return summary


def train(config, data, out, progress=True, quiet=False, device="cpu", overwrite=False):
    """Train a VAE described by ``config`` on ``data`` (as returned by :func:`gvae.io.mnist.load_mnist`)
    on ``device``, writing into the new run folder ``out`` (an existing run there is refused unless
    ``overwrite``); returns the summary dict."""
    return Trainer(config, data, out, progress=progress, quiet=quiet, device=device, overwrite=overwrite).fit()
