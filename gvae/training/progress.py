"""How gvae's long loops show their progress on stderr: a tqdm bar on a terminal, lines in a log
(:func:`progress_bar`, :class:`ProgressLines`), and the durations their messages say (:func:`duration`,
:func:`about`). The training epochs, the evaluations of log p(x), the refinements of the inference gaps
and a sweep's runs show theirs so."""
import sys
import time

from tqdm import tqdm

from ..kernels import compiling_seconds, report_compilations


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
    bar: ``update``, ``refresh`` (after ``total`` is lowered: the lines then say by how much) and ``close``."""
    PARTS = 10

    def __init__(self, total, desc, unit="it", initial=0):
        self.total, self.desc, self.unit, self.n, self.planned = total, desc, unit, initial, total
        self.first, self.start, self.compiled = initial, time.perf_counter(), compiling_seconds()
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
        if self.first < self.n < self.total:  # from the work done, compilation left out
            working = seconds - (compiling_seconds() - self.compiled)
            line += f"; {about(working / (self.n - self.first) * (self.total - self.n))} left"
        if self.total < self.planned:  # lowered by a loop that stops early: the earlier lines said the plan
            line += f" ({self.planned - self.total:,} fewer than the {self.planned:,} planned: stopped early)"
        report_compilations()
        print(line, file=sys.stderr, flush=True)

    def close(self):
        """Nothing to clear: the lines stay."""
