"""Training loop: epochs of Adam steps on the loss of the run's task (:mod:`gvae.training.tasks`: the
negative ELBO of a VAE, the deep variational information bottleneck's loss, ...), with validation,
checkpoints and metrics. The loop knows no task: what a step differentiates, what an epoch draws, what
validation and test measure and which epoch is best, each is asked of ``Trainer.task``.

Output folder (docs/reference/api.md, section 5): ``config.json``, ``metrics.jsonl`` (one object per epoch),
``checkpoint.npz`` (after every epoch) and, at the end, ``summary.json``.

Device: ``Trainer(..., device=)`` puts the task's data, the parameters, the gradient buffer (into whose
views value_and_grad writes the gradients) and Adam's moments on one device at the start; from then on a
step draws its noise with the device's own generator and computes there. The host reads two things per
step: the squared gradient norm (a host float from ``kernels.sum_squares``, which decides whether the
step is skipped and by how much it is clipped) and one small vector holding the loss and the task's
reported batch means (the non-finite check and the step's result). Checkpoints and metrics are written
from host copies at epoch ends; the configuration names no device, so a run may resume on another.

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
from .progress import progress_bar
from ..kernels import array_module, cores_unless_set, device_module, generator
from . import rundir
from .config import RESUMABLE, learning_rate
from .events import Console, tell
from .memory import check_training
from .runfiles import RunFiles, read_run
from .runs import shared_parameters
from .captured_step import CapturedStep
from .state import TrainingState
from .tasks import task_class
from .tasks.base import SPLITS

# The second word of an epoch's seed (seed, EPOCH_STREAM, epoch): not 0, since a SeedSequence pads its
# entropy with zeros, so (seed, 0, 0) would give the initialisation's stream (seeded with seed alone).
EPOCH_STREAM = 1


class TrainingStopped(RuntimeError):
    """Training went wrong and stopped before its last epoch; the message says what went wrong and which
    checkpoint (always one of a healthy epoch) the run resumes from."""


class NonFiniteError(TrainingStopped):
    """Too many steps in a row, or every step of an epoch, had a non-finite loss or gradient."""


class DivergedError(TrainingStopped):
    """After an epoch the task's health number (a VAE's validation ELBO) or the parameters were not finite,
    or the health number fell far below the untrained model's (by more than the untrained model's own
    magnitude)."""


def data_fingerprint(inputs):
    """SHA-256 of a run's host inputs ({split: tuple}, :meth:`Task.inputs`, the training split after its
    limit): the first input (the images) of the train, valid and test splits, then the second of each,
    and so on (a classifier's: its images, then its labels). A resumed run must see the data it was
    trained on."""
    digest = hashlib.sha256()
    for a in (inputs[split][i] for i in range(len(inputs["train"])) for split in SPLITS):
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.data)
    return digest.hexdigest()


def run_inputs(task, data):
    """The host inputs a run of ``task`` trains on from ``data``: every split's (:meth:`Task.inputs`), the
    training split cut to the run's ``limit``; what :func:`data_fingerprint` hashes."""
    inputs = task.inputs(data)
    return {**inputs, "train": tuple(a[:task.config.limit] for a in inputs["train"])}


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
    """One run on one device: its configuration, task, model and data, its :class:`TrainingState`, and
    the loop that trains it. The loop only trains; what is written or printed along the way is up to the
    listeners (:mod:`events`) that :meth:`fit` is given.

    ``Trainer(config, data, out, device=...)`` starts a run (``data`` holds host arrays, as
    :func:`gvae.io.mnist.load_mnist` returns them); :meth:`resume` continues one from its folder with the
    state its last checkpoint holds (parameters, Adam state, epoch, best model)."""

    def __init__(self, config, data, out, progress=True, quiet=False, device="cpu", overwrite=False, saved=None):
        self.xp = device_module(device)  # first: an unavailable device is refused before any work
        self.device, self.config, self.out = device, config, rundir.run_path(out)
        self.overwrite, self.progress, self.quiet = overwrite, progress and not quiet, quiet
        self.task, host = self._task_and_inputs(data)
        self.model = self.task.model
        self.data_sha256 = data_fingerprint(host)
        self.resumed, self.resumed_with = saved is not None, {}
        self.files = RunFiles(None if saved is None else saved.stamps)  # the listener that writes the folder
        self.state = self._first_state(saved, host["train"][0])
        self.inputs = self.task.on_device(host)
        self.grad_flat = self.xp.zeros_like(self.state.params.flat)
        self.rng = self.epoch_generator(self.state.epoch)
        self.captured = CapturedStep(self, kernels.capture(self.grad_flat))
        self.saved_epoch = self.state.epoch  # the epoch of the checkpoint on disk (0: none)

    def _task_and_inputs(self, data):
        """The run's task with its model for the data's images (sizes beyond the machine refused, naming
        the flags, before any array of the model's size is made), and its checked host inputs of every
        split, the training split cut to ``config.limit``."""
        cfg = self.config
        train_x = data["train"][0][:cfg.limit]
        kind = task_class(cfg.task)
        model = kind.build_model(cfg, train_x.shape[1])
        check_training(model, cfg.batch_size, cfg.samples * cfg.iw_samples, len(train_x),
                       recorded=kernels.has_capture(self.device))
        task = kind(cfg, model, self.device)
        return task, run_inputs(task, data)

    def _first_state(self, saved, train_x):
        """The state the run starts from: a resumed run's checkpoint (refused when it was trained on other
        data), else a new state (``train_x``, the host images, sets the decoder's output bias); a run stopped
        before its first checkpoint starts anew (no metrics rows then)."""
        if saved is None or saved.arrays is None:
            start = None if self.config.init_from is None else shared_parameters(self.config.init_from, self.model)
            return TrainingState.new(self.model, self.config, train_x, self.device, start)
        if saved.meta.get("data_sha256") not in (None, self.data_sha256):
            raise ValueError(f"{self.out} was trained on other data than the data given now (SHA-256 "
                             f"{saved.meta['data_sha256'][:16]}... against {self.data_sha256[:16]}...); resume "
                             "it with the data it was trained on (--data)")
        return TrainingState.from_checkpoint(saved.arrays, saved.meta, self.model, self.config, self.device,
                                             saved.metrics, where=saved.checkpoint)

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

    @property
    def train_x(self):
        """The training images on the device, as the task's epochs take them."""
        return self.inputs["train"][0]

    @property
    def valid_x(self):
        """The validation images on the device, as the task validates on them."""
        return self.inputs["valid"][0]

    def step(self, batch, kl_weight):
        """One Adam step on ``batch``, the task's step inputs on the trainer's device: a tuple of arrays
        (B, ...), or the images x (B, n) alone for a task whose only input they are. Returns the task's
        ``reported`` batch means as host floats (a VAE's bound, rec, kl), or None if the step was skipped.
        Its forward and backward replay a capture of themselves where the device has one
        (:mod:`.captured_step`): the same bits; Adam follows on the device."""
        state = self.state
        batch = batch if isinstance(batch, tuple) else (batch,)
        loss, reported, norm2 = self.captured(batch, self.rng, kl_weight)
        if not (math.isfinite(loss) and math.isfinite(norm2)):
            state.bad_steps += 1
            state.skipped_steps += 1
            if state.bad_steps >= self.config.max_bad_steps:
                what = _first_non_finite(loss, self.captured.grads)
                raise NonFiniteError(
                    f"training stopped: {state.bad_steps} steps in a row had a non-finite loss or gradient "
                    f"(first non-finite quantity in the last one: {what}, in epoch "
                    f"{state.epoch + 1}); {self.last_good()}")
            return None
        state.bad_steps = 0
        state.optimizer.update(self.grad_flat, norm=math.sqrt(norm2), **state.average_args())
        return tuple(reported)

    def run_epoch(self):
        """One epoch of steps on the task's batches, then the validation numbers (:meth:`validate`);
        returns its metrics row (also appended to the state's metrics)."""
        cfg, state, task = self.config, self.state, self.task
        start = time.perf_counter()
        state.optimizer.lr = learning_rate(cfg, state.epoch)
        self.rng = self.epoch_generator(state.epoch)
        n_batches = -(-len(self.train_x) // cfg.batch_size)
        report = task.report
        sums = np.zeros(len(report.reported))
        seen = 0
        # Off a terminal no bar: the Console's line per epoch says it there.
        bar = progress_bar(self.progress, n_batches, f"epoch {state.epoch + 1}/{cfg.epochs}", lines=False, leave=False)
        for i, batch in enumerate(task.batches(self.inputs["train"], cfg.batch_size, self.rng)):
            result = self.step(batch, self.kl_weight(state.epoch + i / n_batches))
            bar.update(1)
            if result is None:
                continue
            sums += np.array(result) * len(batch[0])
            seen += len(batch[0])
            bar.set_postfix({report.reported[0]: f"{sums[0] / seen:.2f}"})
        bar.close()
        if seen == 0:
            raise NonFiniteError(f"training stopped: every step of epoch {state.epoch + 1} had a non-finite loss or "
                                 f"gradient; {self.last_good()}")
        state.epoch += 1
        train_seconds = time.perf_counter() - start
        valid = self.validate()
        if report.score(valid) > state.best_valid:
            state.best_valid, state.best_epoch = report.score(valid), state.epoch
            state.best_flat[...] = state.evaluated_flat()
        row = {"epoch": state.epoch, **report.train_row(sums / max(seen, 1)), **valid, "seconds": train_seconds,
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
        """The validation numbers of an epoch's metrics row (the task's report's: a VAE's ``valid_elbo``,
        a classifier's ``valid_objective``, ``valid_error``, ``valid_rate``), of the parameters the run
        evaluates (with Polyak averaging, the average)."""
        return self.task.report.validate(self.evaluated(), self.inputs["valid"])

    def evaluated(self):
        """Named views of the parameters the run evaluates (:meth:`TrainingState.evaluated_flat`)."""
        return self.state.params.unflatten(self.state.evaluated_flat())

    def unhealthy(self, row):
        """Why the epoch just run (its metrics ``row``) left the run unusable, or None: a non-finite health
        number (the task's report's ``health_name``: a VAE's validation ELBO) or parameters, or a health
        number far below the untrained model's."""
        report = self.task.report
        valid, init, what = row[report.health_name], self.state.initial_valid, report.health_label
        if not math.isfinite(valid):
            return f"the {what} is {valid}"
        if not math.isfinite(kernels.sum_squares(self.state.params.flat)):
            return "the parameters hold NaN or inf"
        if init is not None and valid < init - max(abs(init), 1.0):
            return f"the {what} fell to {valid:.4g}, far below the untrained model's {init:.4g}"
        return None

    def test_summary(self, stopped_early):
        """The run's results: the task's test numbers (its report's ``test_summary``) of the best epoch's
        parameters, or with ``test_params`` "last" of the last epoch's (what the run evaluates: with Polyak
        averaging, the average), then the loop's counts."""
        state = self.state
        last = self.config.test_params == "last"
        tested = state.params.unflatten(state.evaluated_flat() if last else state.best_flat)
        counts = {"test_params": self.config.test_params, "tested_epoch": state.epoch if last else state.best_epoch,
                  "best_epoch": state.best_epoch, "epochs": state.epoch, "stopped_early": stopped_early,
                  "skipped_steps": state.skipped_steps, "n_train": len(self.train_x),
                  "n_test": len(self.inputs["test"][0]),
                  "n_parameters": int(state.params.size),
                  "seconds_per_epoch": float(np.mean([m["seconds"] for m in state.metrics])) if state.metrics else None}
        return {**self.task.report.test_summary(tested, self.inputs["test"], state.best_valid), **counts}

    def fit(self, events=None):
        """Train until ``config.epochs`` epochs are done (or ``patience`` epochs pass without a better score,
        the task's report's ``score``: a VAE's validation ELBO, a classifier's validation error); returns the
        summary. ``events`` are the listeners (:class:`events.Events`) told of each point of the loop; by
        default this trainer's :class:`RunFiles` (the folder's files, under its lock) and, unless ``quiet``, a
        :class:`Console`.

        The run's health is checked after every epoch before the listeners hear of it, so a checkpoint
        written then is always one of a healthy epoch; a run that goes wrong raises a
        :class:`TrainingStopped` naming it. The test numbers use the parameters of the epoch with the best
        score."""
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
                state.initial_valid = self.validate()[self.task.report.health_name]
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
    """Train the run ``config`` describes (its task's model) on ``data`` (as returned by
    :func:`gvae.io.mnist.load_mnist`) on ``device``, writing into the new run folder ``out`` (an existing run there is refused unless
    ``overwrite``); returns the summary dict."""
    return Trainer(config, data, out, progress=progress, quiet=quiet, device=device, overwrite=overwrite).fit()
