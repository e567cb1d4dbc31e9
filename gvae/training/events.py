"""What a training loop tells the world, and the listener that prints it.

:meth:`gvae.training.Trainer.fit` only trains: at each point where something could be written or shown it
calls its listeners (a list of :class:`Events`), and they decide what to do. gvae's command line passes
:class:`runfiles.RunFiles` (the run folder's files and lock) and :class:`Console` (the lines it prints);
a program that embeds the loop passes its own (a subclass overriding some methods), or none at all to
train without writing or printing anything. Also how gvae's long loops show their progress (:func:`progress_bar`:
a bar on a terminal, lines in a log)."""
import contextlib
import sys
import time

from tqdm import tqdm


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
        """No better validation ELBO for ``config.patience`` epochs: the loop ends here."""

    def finished(self, trainer, summary):
        """The loop ended (its epochs done or stopped early); ``summary`` holds the test numbers."""


def tell(listeners, what, trainer, *args):
    """Call ``what`` (a method name of :class:`Events`) on every listener, in order."""
    for listener in listeners:
        getattr(listener, what)(trainer, *args)


def duration(seconds):
    """Seconds for a message, as gvae train's and gvae eval's estimates say them: "under 1 s", "42 s",
    "3 min 05 s", "1 h 02 min"."""
    if seconds < 1:
        return "under 1 s"
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min" if hours else (f"{m} min {s:02d} s" if m else f"{s} s")


def about(seconds):
    """An estimate of ``seconds`` for a message: "about 42 s", or "under 1 s" (not "about under 1 s")."""
    return duration(seconds) if seconds < 1 else f"about {duration(seconds)}"


def on_terminal():
    """Whether stderr, where progress is shown, is a terminal (not a log file or a pipe)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def progress_bar(enabled, total, desc, unit="it", initial=0, lines=True, **bar):
    """How a loop over ``total`` units of work shows its progress on stderr when ``enabled``: a tqdm bar
    (``bar``: tqdm's options) on a terminal; elsewhere, where each of a bar's redraws would stay (6,381 of
    them, 561 KB, in a log of 10 epochs), :class:`ProgressLines` where ``lines``, else nothing."""
    if enabled and lines and not on_terminal():
        return ProgressLines(total, desc, unit, initial)
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr,
                disable=not (enabled and on_terminal()), **bar)


class ProgressLines:
    """A progress bar's stand-in off a terminal: one line on stderr each time another tenth of the work is
    done, with the time so far and an estimate of the time left. It takes what gvae's loops call on a tqdm
    bar: ``update``, ``refresh`` (after ``total`` is lowered) and ``close``."""
    PARTS = 10

    def __init__(self, total, desc, unit="it", initial=0):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.first, self.start = initial, time.perf_counter()
        self.shown = self._part()

    def _part(self):
        return self.PARTS * self.n // self.total if self.total > 0 else self.PARTS

    def update(self, n=1):
        self.n += n
        self.refresh()

    def refresh(self):
        part = self._part()
        if part <= self.shown:
            return
        self.shown = part
        seconds = time.perf_counter() - self.start
        percent = 100 * self.n // self.total if self.total > 0 else 100
        line = f"{self.desc}: {self.n:,} of {self.total:,} {self.unit}s ({percent}%) in {duration(seconds)}"
        if self.first < self.n < self.total:
            line += f"; {about(seconds / (self.n - self.first) * (self.total - self.n))} left"
        print(line, file=sys.stderr, flush=True)

    def close(self):
        """Nothing to clear: the lines stay."""


class Console(Events):
    """The lines ``gvae train`` prints: the resumed run and epoch it goes on from, one line per epoch with
    an estimate of the time left, and an early stop."""

    def started(self, trainer):
        self.first, self.start = trainer.state.epoch, time.perf_counter()
        if trainer.resumed and trainer.state.epoch == trainer.saved_epoch:
            changed = ", ".join(f"{name} {value}" for name, value in sorted(trainer.resumed_with.items()))
            print(f"resuming {trainer.out} from epoch {trainer.state.epoch} of {trainer.config.epochs}"
                  + (f" with {changed}" if changed else "")
                  + ("" if trainer.state.epoch else " (no epoch had finished: it starts over with its configuration)"),
                  flush=True)

    def epoch_end(self, trainer, row):
        epochs, done = trainer.config.epochs, trainer.state.epoch
        left = (time.perf_counter() - self.start) / (done - self.first) * (epochs - done)
        if trainer.classify:
            numbers = (f"train objective {row['train_objective']:.4f}  valid error {100 * row['valid_error']:.2f}%  "
                       f"valid rate {row['valid_rate']:.2f} nats")
        else:
            numbers = f"train bound {row['train_bound']:.3f}  valid ELBO {row['valid_elbo']:.3f} nats/image"
        print(f"epoch {row['epoch']}/{epochs}  {numbers}  {row['seconds']:.1f} s"
              + (f"  {about(left)} left" if done < epochs else ""), flush=True)

    def stopped_early(self, trainer):
        print(f"stopped early: no better {trainer.score_label} for {trainer.config.patience} epochs (best: epoch "
              f"{trainer.state.best_epoch})", flush=True)
