"""What a training loop tells the world, and the listener that prints it.

:meth:`gvae.training.Trainer.fit` only trains: at each point where something could be written or shown it
calls its listeners (a list of :class:`Events`), and they decide what to do. gvae's command line passes
:class:`runfiles.RunFiles` (the run folder's files and lock) and :class:`Console` (the lines it prints);
a program that embeds the loop passes its own (a subclass overriding some methods), or none at all to
train without writing or printing anything."""
import contextlib
import statistics
import time

from ..kernels import compiling_seconds, report_compilations
from .progress import about


class Events:
    """A listener of a training loop; every method does nothing unless overridden. ``trainer`` is the
    :class:`Trainer` whose state (``trainer.state``) the loop has just changed."""

    def running(self, trainer):
        """A context manager held for the whole of ``fit`` (a lock, say); entered before anything else."""
        return contextlib.nullcontext()

    def started(self, trainer):
        """The loop is about to run its first epoch of this call (``trainer.state.epoch`` done before)."""

    def epoch_end(self, trainer, row):
        """An epoch ended healthy: ``row`` is its metrics row, the last of ``trainer.state.metrics``."""

    def diverged(self, trainer, why):
        """The epoch just run left the run unusable (``why``); the loop raises DivergedError next."""

    def stopped_early(self, trainer):
        """No better score (the task's: a VAE's validation ELBO) for ``config.patience`` epochs: the loop
        ends here."""

    def finished(self, trainer, summary):
        """The loop ended (its epochs done or stopped early); ``summary`` holds the test numbers."""


def tell(listeners, what, trainer, *args):
    """Call ``what`` (a method name of :class:`Events`) on every listener, in order."""
    for listener in listeners:
        getattr(listener, what)(trainer, *args)


class Console(Events):
    """The lines ``gvae train`` prints: the resumed run and epoch it goes on from, one line per epoch with
    an estimate of the time left, and an early stop."""

    def started(self, trainer):
        self.last, self.spans = (time.perf_counter(), compiling_seconds()), []
        if trainer.resumed and trainer.state.epoch == trainer.saved_epoch:
            changed = ", ".join(f"{name} {value}" for name, value in sorted(trainer.resumed_with.items()))
            print(f"resuming {trainer.out} from epoch {trainer.state.epoch} of {trainer.config.epochs}"
                  + (f" with {changed}" if changed else "")
                  + ("" if trainer.state.epoch else " (no epoch had finished: it starts over with its configuration)"),
                  flush=True)

    def epoch_end(self, trainer, row):
        epochs, done = trainer.config.epochs, trainer.state.epoch
        # The estimate is the median of this call's epochs' wall times, each less the seconds it spent
        # compiling; the first (which loads the kernels) counts only while it is the only one. A median, not a
        # mean: an epoch stretched by a pause (a stopped process, a busy machine) must not stretch the
        # estimate for the rest of the run.
        now = (time.perf_counter(), compiling_seconds())
        self.spans.append(now[0] - self.last[0] - (now[1] - self.last[1]))
        self.last = now
        left = statistics.median(self.spans[1:] or self.spans) * (epochs - done)
        report_compilations()
        print(f"epoch {row['epoch']}/{epochs}  {trainer.task.report.epoch_line(row)}  {row['seconds']:.1f} s"
              + (f"  {about(left)} left" if done < epochs else ""), flush=True)

    def stopped_early(self, trainer):
        report_compilations()
        print(f"stopped early: no better {trainer.task.report.score_label} for {trainer.config.patience} epochs "
              f"(best: epoch {trainer.state.best_epoch})", flush=True)
