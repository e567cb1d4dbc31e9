"""The announcement of Numba compiling gvae's kernels: compiling takes minutes on a cold cache, and a silent
wait of minutes looks like a hang.

When the process's first kernel misses the cache, one line says what compiles, where it is cached and
how long it takes; the kernels compiled since are then counted, and one line says how many took how long
where the program next reports (:meth:`Compilations.report`: gvae's commands before each line of theirs,
so that it comes before the line whose wait it explains) or at exit. A cache hit says nothing. The time
spent compiling (:meth:`Compilations.seconds`) is what gvae's estimates of the time left leave out. The
lines are INFO records of this module's logger: where the application configured logging they go
through it (and its levels decide); where it configured none they go to stderr, unless a level set on a
logger of gvae turns INFO off. ``logging.getLogger("gvae").setLevel(logging.WARNING)`` silences them.
"""
import atexit
import contextlib
import logging
import sys
import threading
import time

__all__ = ["Compilations", "QUIET_SECONDS"]

_LOG = logging.getLogger(__name__)
# A burst of compilation is over when no kernel has compiled for this long: the kernels of a training
# step compile one front-end call after another, with only a little Python between them.
QUIET_SECONDS = 1.0
# What a cold cache costs, said in the first line.
_ESTIMATE = "gvae train's take 1.5-3 min on 2 cores, the other commands' seconds"


def _channel():
    """Where the lines go: ``_LOG.info`` where the application configured logging (its levels decide),
    else ``print`` to stderr, or None where a level set on a logger of gvae turns INFO off. Unconfigured,
    Python's logging would drop INFO, and a silent wait of minutes is what the lines are for."""
    if _LOG.hasHandlers():
        return _LOG.info
    if _LOG.manager.disable >= logging.INFO:
        return None
    logger = _LOG
    while logger is not None and logger is not logging.root:
        if logger.level:
            if logger.level > logging.INFO:
                return None
            break
        logger = logger.parent
    return lambda message: print(message, file=sys.stderr, flush=True)


class Compilations:
    """The announcement of compilation in this process (one, :data:`state.RUNTIME`'s). A compile call of a
    gvae kernel (a dispatcher's, a C entry's) is :meth:`session`, nested ones included; a signature missing
    from the cache (:meth:`missed`) opens a burst, and the process's first says so in a line naming the
    dtype and the cache folder (through :func:`_channel`, chosen then: pytest's logging, say, gone by exit);
    each kernel written to the cache (:meth:`saved`) is counted. A burst lasts from its first miss to the
    end of the last outermost session that began within :data:`QUIET_SECONDS` of the one before;
    :meth:`report` (and the process's exit) says the kernels counted since the last report and the time
    their bursts took, in one line."""

    def __init__(self):
        self.reset()

    def reset(self):
        """No burst under way, nothing counted and a lock nobody holds (a forked child's start)."""
        self._lock = threading.Lock()
        self._depth = 0        # compile calls under way (waiting for Numba's lock included)
        self._start = None     # the open burst's first miss (perf_counter), None outside a burst
        self._end = 0.0        # when the last outermost session ended
        self._closed = 0.0     # the seconds of the bursts closed so far
        self._compiled = 0     # kernels compiled since the last report
        self._reported = 0.0   # the seconds compiling at the last report
        self._say = None       # the channel of the lines, chosen at the process's first miss
        self._announced = False

    def _close_burst(self, now):
        """Close the open burst if it is over (nothing under way, and quiet since ``now`` - QUIET_SECONDS or
        ``now`` is None: a report); under the lock."""
        if self._start is not None and self._depth == 0 and (now is None or now - self._end > QUIET_SECONDS):
            self._closed += self._end - self._start
            self._start = None

    def _seconds(self):
        """Under the lock: the closed bursts' seconds and the open one's so far."""
        if self._start is None:
            return self._closed
        return self._closed + (time.perf_counter() if self._depth else self._end) - self._start

    def seconds(self):
        """The seconds this process has spent compiling gvae's kernels (cache misses' bursts) so far."""
        with self._lock:
            return self._seconds()

    @contextlib.contextmanager
    def session(self):
        with self._lock:
            if self._depth == 0:
                self._close_burst(time.perf_counter())
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._start is not None:
                    self._end = time.perf_counter()

    def missed(self, sig, folder):
        with self._lock:
            if self._start is not None:
                return
            self._start = time.perf_counter()
            if self._announced:
                return
            self._announced = True
            say = self._say = _channel()
        atexit.register(self.report)
        # a dispatcher's signature is a tuple of types, a C entry's a Signature (its .args)
        args = getattr(sig, "args", sig)
        dtypes = sorted({str(t.dtype) for t in args if str(getattr(t, "dtype", "")).startswith("float")})
        what = f" for {', '.join(dtypes)}" if dtypes else ""
        if say is not None:
            say(f"gvae: compiling Numba kernels{what} that are not in the cache yet, into {folder} (once, after "
                f"an install or an update of gvae; {_ESTIMATE})")

    def saved(self):
        with self._lock:
            self._compiled += 1

    def report(self):
        """Say how many kernels were compiled since the last report, and in how long, unless none were or
        one is compiling now (then a later report says it)."""
        with self._lock:
            if self._depth or not self._compiled:  # none compiled: none missed, or the error said why
                return
            self._close_burst(None)
            count, seconds, say = self._compiled, self._closed - self._reported, self._say
            self._compiled, self._reported = 0, self._closed
        if say is not None:
            say(f"gvae: compiled {count} Numba kernel{'s' if count != 1 else ''} in {seconds:.1f} s; "
                "later runs load them from the cache")
