"""gvae's own CPU threads: how many there are, and running the pieces of one kernel call on them.

A training step is a chain of short calls (0.05-3 ms each: GEMMs, activations, the likelihood, Adam)
with a data dependency between each and the next, so the only parallelism is inside a call. OpenBLAS
parallelises its GEMMs itself but badly at these shapes (measured at 2 threads: 120-130 GFLOP/s, where
the same GEMMs split by rows over two single-threaded calls reach 170-185), and an OpenMP pool (Numba's
``parallel=True``) spins after each region, fighting OpenBLAS's spinning threads for the cores. So the
pieces here are plain calls of ``nogil`` Numba kernels, or of NumPy's matmul on one BLAS thread, handed
to persistent Python threads that sleep on a queue between calls.

``set_threads(n)`` sets how many threads run a call (the caller's own and n - 1 workers; default 1:
every call runs in the caller's thread). gvae's own long computations started from Python (training)
run on one thread per available core unless ``set_threads`` was called (:func:`cores_unless_set`), so a
library user gets the speed of the ``gvae`` command without setting anything. Nothing here touches the
environment; a forked child starts without workers and makes its own when it first needs them.
"""
import contextlib
import math
import os
import queue
import threading

__all__ = ["set_threads", "get_threads", "available_cores", "cores_unless_set", "threads_unless_set", "run",
           "over_blocks", "blocks", "row_blocks"]

# A hand-over to a worker and back costs some 20-60 us here (a futex wake-up each way, and the GIL), so
# a kernel call is split only into blocks that each take at least this long.
MIN_BLOCK_SECONDS = 150e-6

_state = {"threads": 1, "set": False, "workers": [], "done": queue.SimpleQueue(), "lock": threading.Lock()}


def _work(inbox, done):
    while True:
        task = inbox.get()
        if task is None:
            return
        try:
            task()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            done.put(exc)
        else:
            done.put(None)


def _after_fork():
    # The parent's workers do not exist in a forked child (and its lock may be held by one of them).
    _state.update(workers=[], done=queue.SimpleQueue(), lock=threading.Lock())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def set_threads(n):
    """Run each of gvae's CPU kernel calls on up to ``n`` threads (an int >= 1). Workers are started
    when a call first needs them and stopped when n shrinks."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of threads must be an integer >= 1, got {n!r}")
    with _state["lock"]:
        workers = _state["workers"]
        while len(workers) > n - 1:
            _thread, inbox = workers.pop()
            inbox.put(None)
        _state["threads"] = n
        _state["set"] = True


def available_cores():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def cores_unless_set():
    """Within it, kernel calls use one thread per available core, unless :func:`set_threads` was called
    (that choice stands); the count is restored after."""
    if _state["set"]:
        yield
        return
    before = _state["threads"]
    _state["threads"] = available_cores()
    try:
        yield
    finally:
        _state["threads"] = before


def threads_unless_set():
    """The thread count a call takes inside :func:`cores_unless_set`, without entering it: the count
    :func:`set_threads` chose, else one per available core."""
    return _state["threads"] if _state["set"] else available_cores()


def get_threads():
    """How many threads a kernel call may use (see :func:`set_threads`)."""
    return _state["threads"]


def blocks(n, grain):
    """range(n) cut into at most :func:`get_threads` contiguous (start, stop) blocks of >= ``grain``
    items each (one block when n < 2 * grain)."""
    parts = max(1, min(_state["threads"], n // max(1, grain)))
    if parts == 1:
        return [(0, n)]
    edges = [n * k // parts for k in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def row_blocks(rows, cols, seconds_per_element):
    """:func:`blocks` of the rows of a (rows, cols) elementwise kernel that takes ``seconds_per_element``
    on one thread, each block worth at least MIN_BLOCK_SECONDS."""
    return blocks(rows, math.ceil(MIN_BLOCK_SECONDS / (max(1, cols) * seconds_per_element)))


def run(tasks):
    """Call the independent callables ``tasks``, the first in the caller's thread and the others on
    workers, and return when all have returned (re-raising the first exception any of them raised).

    Each task must release the GIL for its work (a ``nogil`` Numba kernel, a BLAS call) to run in
    parallel. A call made while another is running (from a task, or from a second user thread) runs its
    tasks one after the other in its own thread, as does every call on one thread (:func:`set_threads`)."""
    lock = _state["lock"]
    if len(tasks) == 1 or _state["threads"] == 1 or not lock.acquire(blocking=False):
        for task in tasks:
            task()
        return
    try:
        workers, done = _state["workers"], _state["done"]
        while len(workers) < len(tasks) - 1:
            inbox = queue.SimpleQueue()
            thread = threading.Thread(target=_work, args=(inbox, done), daemon=True,
                                      name=f"gvae-worker-{len(workers) + 1}")
            thread.start()
            workers.append((thread, inbox))
        for (_thread, inbox), task in zip(workers, tasks[1:]):
            inbox.put(task)
        pending = len(tasks) - 1
        error = None
        try:
            tasks[0]()
        except BaseException as exc:  # noqa: BLE001 - re-raised once the workers are done
            error = exc
        try:
            while pending:
                exc = done.get()
                pending -= 1
                error = error or exc
        finally:
            # Interrupted (Ctrl-C) while waiting: the workers' results must not reach the next call.
            while pending:
                done.get()
                pending -= 1
        if error is not None:
            raise error
    finally:
        lock.release()


def over_blocks(fun, parts):
    """[fun(lo, hi) for (lo, hi) in parts], the calls run side by side by :func:`run`."""
    if len(parts) == 1:  # the common case of a short call: no hand-over machinery
        return [fun(*parts[0])]
    results = [None] * len(parts)

    def task(k, lo, hi):
        results[k] = fun(lo, hi)
    run([lambda k=k, lo=lo, hi=hi: task(k, lo, hi) for k, (lo, hi) in enumerate(parts)])
    return results
