"""gvae's own CPU threads: how many there are, and running the pieces of one kernel call on them.

A training step is a chain of short calls (GEMMs, activations, the likelihood, Adam) with a data
dependency between each and the next, so the only parallelism is inside a call. OpenBLAS parallelises
its GEMMs itself but badly at these shapes (the same GEMMs split by rows over two single-threaded calls
run faster than OpenBLAS on two threads), and an OpenMP pool (Numba's ``parallel=True``) spins after each
region, fighting OpenBLAS's spinning threads for the cores. So the pieces here are plain calls of
``nogil`` Numba kernels, or of the BLAS on one thread, handed to persistent threads of gvae's own. Each
waits in native code (:mod:`worker_loop`): it spins without the GIL for SPIN_SECONDS after its last task,
running the products and C entries (:mod:`entries`) posted to it there, and then sleeps on a queue until
the next call.

``set_threads(n)`` sets how many threads run a call (the caller's own and n - 1 workers; default 1:
every call runs in the caller's thread). gvae's own long computations started from Python (training)
run on one thread per available core unless ``set_threads`` was called (:func:`cores_unless_set`), so a
library user gets the speed of the ``gvae`` command without setting anything. That count is the calling
thread's own (a context variable), never a change of the process's: two trainings in two threads each
have theirs, and a thread outside both keeps the process's count. Every kernel reads the count through
:func:`get_threads`. Nothing here touches the environment; a forked child starts without workers and
makes its own when it first needs them (:meth:`state.Runtime.after_fork`). The pool's state is
:data:`state.RUNTIME`'s.
"""
import contextlib
import math
import os
import queue
import threading
import time

import numpy as np

from . import worker_loop
from .state import RUNTIME

__all__ = ["set_threads", "get_threads", "available_cores", "cores_unless_set", "threads_unless_set", "run",
           "run_here", "held_workers", "over_blocks", "blocks", "row_blocks", "worth_waking", "in_a_call"]

# The least work worth a block of an elementwise kernel (row_blocks). Every such kernel hands its blocks
# over as C entries (entries.run_blocks), which a spinning worker sees at once (a microsecond or two; a
# Python task would wait 20-60 us for the GIL). 150 us, this value while the blocks were Python tasks, left
# the IWAE step's 500-row ELU backward and the ELBO step's 100-row passes on one core while the other
# spun: at 10 us both steps took 3-5% less at two threads (docs/performance.md, "Small blocks").
MIN_BLOCK_SECONDS = 10e-6
# Blocks worth less than this each do not wake a sleeping worker (a futex wake-up: 50-600 us measured on the
# 2-core VM): the caller runs them one after the other itself, the same blocks, so the same bits.
WAKE_SECONDS = 150e-6
# A worker with nothing to do spins this long before it sleeps: longer than most gaps between the
# hand-overs of a training step, short enough that an idle process costs nothing measurable.
SPIN_SECONDS = 0.5e-3
# The caller spins this long for a worker's task to finish, then checks every POLL_SECONDS (a task as
# long as the caller's own block is finished by the time the caller's is, or nearly).
WAIT_SECONDS, POLL_SECONDS = 5e-3, 50e-6


def _rounds(seconds):
    """The turns of :func:`worker_loop.wait_done`'s loop that take about ``seconds`` here (measured once
    per process, on a board nothing changes)."""
    if RUNTIME.rounds_per_second is None:
        board = worker_loop.new_board()
        worker_loop.wait_done(board, 1, 1)  # compiled or loaded before the clock starts
        turns = 20_000
        start = time.perf_counter()
        worker_loop.wait_done(board, 1, turns)
        RUNTIME.rounds_per_second = turns / max(time.perf_counter() - start, 1e-6)
    return max(1, int(seconds * RUNTIME.rounds_per_second))


class _Worker:
    """One worker thread and its board. The caller posts a task (:meth:`post`) and collects it
    (:meth:`collect`); a task whose ``native`` attribute is not None (a product's cblas arguments, see
    :mod:`gvae.kernels.matmul_cpu`, or a C entry's, see :mod:`entries`) runs without the GIL, any other is
    called in the worker's Python."""

    def __init__(self, name):
        self.board = worker_loop.new_board()
        self.posted = 0
        self.task = None  # kept (with the arrays whose addresses are on the board) until collected
        self.count = None  # the count of the call being run, the one its Python task sees (get_threads)
        self.errstate = {}  # the caller's np.geterr(), under which its Python task runs
        self.error = None
        self.lock = threading.Lock()
        self.sleeping = False
        self.bell = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, args=(_rounds(SPIN_SECONDS),), daemon=True, name=name)
        self.thread.start()

    def _loop(self, rounds):
        board, finished = self.board, 0
        while True:
            kind = worker_loop.serve(board, rounds, finished)
            finished = 0
            if kind == worker_loop.QUIT:
                return
            if kind == worker_loop.PYTHON:
                try:
                    # A task is a piece of its caller's call: the kernels it calls cut as the caller's would.
                    # NumPy's floating-point error state too (np.errstate holds in its own thread only).
                    RUNTIME.own_threads.set(self.count)
                    with np.errstate(**self.errstate):
                        self.task()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
                    self.error = exc
                finished = int(board[worker_loop.POSTED])  # reported by serve, once the GIL is released
                continue
            # Nothing posted for a while: sleep until a post rings the bell (the lock orders the check
            # here against post's, so that no post goes unseen).
            with self.lock:
                self.sleeping = sleeping = bool(board[worker_loop.POSTED] == board[worker_loop.DONE])
            if sleeping:
                self.bell.get()

    def post(self, task, native=None):
        """Hand ``task`` over, as its ``native`` form (kind, int64 arguments) where it has one."""
        board = self.board
        if native is not None:
            board[worker_loop.ARGS:worker_loop.ARGS + len(native[1])] = native[1]
        board[worker_loop.KIND] = worker_loop.PYTHON if native is None else native[0]
        self.task = task
        # Published before it is counted: an interrupt between the two leaves a task that collect() does not
        # wait for (the one-line window), never a count that no task will ever reach (a hang).
        worker_loop.publish(board, self.posted + 1)
        self.posted += 1
        with self.lock:
            if self.sleeping:
                self.sleeping = False
                self.bell.put(None)

    def collect(self, rounds):
        """Wait until the posted task is finished; its exception, or None. Nothing of it remains after."""
        while not worker_loop.wait_done(self.board, self.posted, rounds):
            time.sleep(POLL_SECONDS)
        error, self.error, self.task = self.error, None, None
        return error

    def stop(self):
        self.post(_QUIT, _QUIT.native)


class _Quit:
    native = (worker_loop.QUIT, ())


class _Noop:
    native = (worker_loop.NOOP, ())


_QUIT, _NOOP = _Quit(), _Noop()


def set_threads(n):
    """Run each of gvae's CPU kernel calls on up to ``n`` threads (an int >= 1). Workers are started
    when a call first needs them and stopped when n shrinks. The choice holds in every thread, those
    inside :func:`cores_unless_set` included."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of threads must be an integer >= 1, got {n!r}")
    with RUNTIME.pool_lock:
        workers = RUNTIME.workers
        while len(workers) > n - 1:
            workers.pop().stop()
        RUNTIME.threads = n
        RUNTIME.threads_set = True


def available_cores():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def cores_unless_set():
    """Within it, the calling thread's kernel calls use one thread per available core, unless
    :func:`set_threads` was called (that choice stands, even when made meanwhile). Only this thread's
    count changes, for the duration: other threads, and this one after, see the process's."""
    if RUNTIME.threads_set:
        yield
        return
    token = RUNTIME.own_threads.set(available_cores())
    try:
        yield
    finally:
        RUNTIME.own_threads.reset(token)


def threads_unless_set():
    """The thread count a call takes inside :func:`cores_unless_set`, without entering it: the count
    :func:`set_threads` chose, else one per available core (this thread's own where it is inside one)."""
    if RUNTIME.threads_set:
        return RUNTIME.threads
    own = RUNTIME.own_threads.get()
    return available_cores() if own is None else own


def get_threads():
    """How many threads a kernel call made now in this thread may use: the process's (see
    :func:`set_threads`), or this thread's own inside :func:`cores_unless_set` while set_threads was not
    called."""
    own = RUNTIME.own_threads.get()
    return RUNTIME.threads if own is None or RUNTIME.threads_set else own


def in_a_call():
    """Whether a :func:`run` is under way (this thread is one of its tasks, or another thread's call holds
    the workers): a call made now runs its tasks one after the other in this thread."""
    return RUNTIME.pool_lock.locked()


def blocks(n, grain, count=None):
    """range(n) cut into at most ``count`` (default :func:`get_threads`) contiguous (start, stop) blocks of
    >= ``grain`` items each (one block when n < 2 * grain)."""
    parts = max(1, min(get_threads() if count is None else count, n // max(1, grain)))
    if parts == 1:
        return [(0, n)]
    edges = [n * k // parts for k in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


class RowBlocks(list):
    """:func:`row_blocks`' (start, stop) blocks, with the work of the largest in seconds (``seconds``)."""
    __slots__ = ("seconds",)


def row_blocks(rows, cols, seconds_per_element):
    """:func:`blocks` of the rows of a (rows, cols) elementwise kernel that takes ``seconds_per_element``
    on one thread, each block worth at least MIN_BLOCK_SECONDS (a :class:`RowBlocks`)."""
    per_row = max(1, cols) * seconds_per_element
    parts = RowBlocks(blocks(rows, math.ceil(MIN_BLOCK_SECONDS / per_row)))
    parts.seconds = max(hi - lo for lo, hi in parts) * per_row
    return parts


def worth_waking(parts):
    """Whether the blocks ``parts`` (:func:`row_blocks`') should go to gvae's workers even if one of those
    they would take is asleep (or not started): when each block is worth WAKE_SECONDS or more, and always
    while a program is recorded (its replays hold the workers awake). Otherwise the caller runs them."""
    if RUNTIME.recording.get() is not None or getattr(parts, "seconds", math.inf) >= WAKE_SECONDS:
        return True
    workers = RUNTIME.workers
    needed = len(parts) - 1
    return len(workers) >= needed and not any(worker.sleeping for worker in workers[:needed])


def run(tasks):
    """Call the independent callables ``tasks``, the first in the caller's thread and the others on
    workers, and return when all have returned (re-raising the first exception any of them raised).

    Each task must release the GIL for its work (a ``nogil`` Numba kernel, a BLAS call) to run in
    parallel; a task whose ``native`` attribute is not None runs on a worker without Python
    (:mod:`worker_loop`). A call made while another is running (from a task, or from a second user
    thread) runs its tasks one after the other in its own thread, as does every call on one thread
    (:func:`set_threads`). Inside :func:`programs.recording` the call is recorded as it runs."""
    lock = RUNTIME.pool_lock
    count = get_threads()
    if len(tasks) == 1 or count == 1 or not lock.acquire(blocking=False):
        run_here(tasks)
        return
    try:
        program = RUNTIME.recording.get()
        if program is not None:
            program.add(tasks, range(len(tasks)))
        workers = RUNTIME.workers
        while len(workers) < len(tasks) - 1:
            workers.append(_Worker(f"gvae-worker-{len(workers) + 1}"))
        busy = workers[:len(tasks) - 1]
        natives = [getattr(task, "native", None) for task in tasks[1:]]  # all of them before any is posted
        errstate = np.geterr() if None in natives else None  # for the tasks that run in Python
        error = None
        try:
            # Ctrl-C may land anywhere in here, the posts included: every worker is collected below all the
            # same (a worker whose post had not happened yet is collected at once).
            for worker, task, native in zip(busy, tasks[1:], natives):
                worker.count, worker.errstate = count, errstate  # before the post: read once the task is published
                worker.post(task, native)
            tasks[0]()
        except BaseException as exc:  # noqa: BLE001 - re-raised once the workers are done
            error = exc
        rounds, collected = _rounds(WAIT_SECONDS), 0
        try:
            for worker in busy:
                failed = worker.collect(rounds)
                collected += 1
                error = failed if error is None else error
        finally:
            # Interrupted (Ctrl-C) while waiting: no worker may still write into the call's arrays, nor
            # its completion reach the next call.
            for worker in busy[collected:]:
                worker.collect(rounds)
        if error is not None:
            raise error
    finally:
        lock.release()


def run_here(tasks):
    """Call ``tasks`` one after the other in this thread (recorded as such inside
    :func:`programs.recording`)."""
    program = RUNTIME.recording.get()
    if program is not None:
        program.add(tasks, [0] * len(tasks))
    for task in tasks:
        task()


@contextlib.contextmanager
def held_workers(count):
    """The boards of gvae's first ``count`` workers (started if need be), for native code to post tasks to
    (:mod:`programs`): the workers' lock taken, each worker awake and spinning (``HOLD``) until the end,
    when the tasks posted meanwhile are counted as the worker's own."""
    if count > get_threads() - 1:
        raise ValueError(f"{count} worker(s) asked for, with {get_threads()} thread(s) set")
    with RUNTIME.pool_lock:
        workers = RUNTIME.workers
        while len(workers) < count:
            workers.append(_Worker(f"gvae-worker-{len(workers) + 1}"))
        held = workers[:count]
        rounds = _rounds(WAIT_SECONDS)
        try:
            for worker in held:
                worker.board[worker_loop.HOLD] = 1
                worker.post(_NOOP, _NOOP.native)  # wakes a sleeping worker; it then spins while held
                worker.collect(rounds)
            yield [worker.board for worker in held]
        finally:
            for worker in held:
                # Whatever the native code posted, the worker finishes before it is let go.
                while not worker_loop.wait_done(worker.board, worker.board[worker_loop.POSTED], rounds):
                    time.sleep(POLL_SECONDS)
                worker.posted = int(worker.board[worker_loop.POSTED])
                worker.board[worker_loop.HOLD] = 0


def over_blocks(fun, parts):
    """[fun(lo, hi) for (lo, hi) in parts], the calls run side by side by :func:`run`."""
    if len(parts) == 1:  # the common case of a short call: no hand-over machinery
        program = RUNTIME.recording.get()
        if program is not None:
            program.refuse("a Python function (over_blocks) ran while recording")
        return [fun(*parts[0])]
    results = [None] * len(parts)

    def task(k, lo, hi):
        results[k] = fun(lo, hi)
    run([lambda k=k, lo=lo, hi=hi: task(k, lo, hi) for k, (lo, hi) in enumerate(parts)])
    return results
