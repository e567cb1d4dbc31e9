"""The announcement of Numba compiling gvae's kernels: compiling takes minutes on a cold cache, and a silent
wait of minutes looks like a hang.

When a kernel misses the cache, one line says what compiles and where it is cached; when the burst of
compilation is over (no kernel compiling for :data:`QUIET_SECONDS`), one line says how many kernels took
how long. A cache hit says nothing. The lines are INFO records of this module's logger: where the
application configured logging they go through it (and its levels decide); where it configured none
they go to stderr, unless a level set on a logger of gvae turns INFO off.
``logging.getLogger("gvae").setLevel(logging.WARNING)`` silences them.
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
_ESTIMATE = "a training step's kernels take 0.5-3 min on 2 cores"


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
    from the cache (:meth:`missed`) opens a burst, with a line naming the dtype and the cache folder
    (through :func:`_channel`, chosen then for the burst's two lines: pytest's logging, say, gone by exit);
    each kernel written to the cache (:meth:`saved`) is counted; the burst closes :data:`QUIET_SECONDS`
    after the last outermost session ended with none begun since (a timer thread), or when the process
    exits before, with a line giving the count and the time from the first miss to the end of the last
    session."""

    def __init__(self):
        self.reset()

    def reset(self):
        """No burst under way and a lock nobody holds (a forked child's start)."""
        self._lock = threading.Lock()
        self._depth = 0        # compile calls under way (waiting for Numba's lock included)
        self._start = None     # the burst's first miss (perf_counter), None outside a burst
        self._end = 0.0        # when the last outermost session ended
        self._compiled = 0
        self._say = None       # the burst's channel
        self._timer = None
        self._at_exit = False  # _close_now registered with atexit

    @contextlib.contextmanager
    def session(self):
        with self._lock:
            self._depth += 1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._start is not None:
                    self._end = time.perf_counter()
                    self._timer = threading.Timer(QUIET_SECONDS, self._close)
                    self._timer.daemon = True  # the process need not wait for it: _close_now says it at exit
                    self._timer.start()

    def missed(self, sig, folder):
        with self._lock:
            if self._start is not None:
                return
            self._start, self._compiled, self._say = time.perf_counter(), 0, _channel()
            first, self._at_exit, say = not self._at_exit, True, self._say
        if first:
            atexit.register(self._close_now)
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

    def _close(self):
        with self._lock:
            if self._depth or self._start is None:  # a session began meanwhile: it closes the burst
                return
            count, seconds, say = self._compiled, self._end - self._start, self._say
            self._start, self._timer = None, None
        if count and say is not None:  # none compiled: the compilation failed, and the error said so
            say(f"gvae: compiled {count} Numba kernel{'s' if count != 1 else ''} in {seconds:.1f} s; "
                "later runs load them from the cache")

    def _close_now(self):
        timer = self._timer
        if timer is not None:
            timer.cancel()
        self._close()
