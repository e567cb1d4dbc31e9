"""The one serial-or-parallel driver of the band kernels.

A kernel's work is a range of items (pairs, factors, blocks of factors) cut into chunks, each run by a
chunk function ``run(*args, lo, hi) -> (bad, checksum)`` (see common_cpu), a ``nogil`` Numba kernel; the
driver runs the chunks and sums the pairs. Below a threshold of work the whole range is one chunk run
serially in the caller's thread: a hand-over to another thread costs more than a short chunk. Above it,
the chunks run side by side on gvae's own threads (:mod:`..cpu.threads`), one per core the process may
use unless ``set_threads`` chose a count.

The driver is Python, not a Numba ``parallel=True`` kernel: Numba links and optimises a caller with
everything it calls, so a jitted driver over the selected inversion compiled it twice more (once for
its parallel loop's body), and its OpenMP pool would spin beside gvae's threads.
"""
import numpy as np

from ..cpu import programs, threads
from ..cpu.entries import Entry, run_blocks

# Work (elements x diagonals of the per-pair loops) below which a call runs serially.
_PARALLEL_MIN = 1 << 18


def pair_plan(L, offs, b, out):
    """The plan of the kernels over (factor, sample) pairs, L (F, K, n) and b, out (S, F, n): F S pairs,
    n K work each."""
    F, K, n = L.shape
    P = F * b.shape[0]
    return P, 1, P * n * K, _PARALLEL_MIN


def chunks(items, step, parts):
    """[lo, hi) of ``parts`` contiguous chunks of range(items), cut at multiples of step, none empty."""
    nb = (items + step - 1) // step
    parts = max(1, min(parts, nb))
    return [(min(items, c * nb // parts * step), min(items, (c + 1) * nb // parts * step)) for c in range(parts)]


def driver(plan, run):
    """The kernel ``(*args) -> (bad, checksum)`` that runs the jitted chunk function ``run`` over the
    work that ``plan(*args) -> (items, step, work, work_min)`` describes: items [0, items) in one call
    when work < work_min or one step holds them all, else in one chunk per thread (cut at multiples of
    step); returns the summed (bad, checksum). ``drive.kernel`` is the chunk function.

    ``run`` may be the :class:`~..cpu.entries.Entry` of the chunk function (``results=2``, its parameters
    ``*args, lo, hi``): a worker's chunk then runs as that C entry, which writes the chunk's (bad,
    checksum) into two float64 slots, and a serial call made while a program is recorded goes through
    :func:`threads.run_here`, so that the recorded training step holds it (:mod:`..cpu.programs`). A chunk
    function without an entry refuses a recording."""
    entry = run if isinstance(run, Entry) else None
    kernel = run.kernel if entry is not None else run
    name = kernel.py_func.__name__

    def drive(*args):
        items, step, work, work_min = plan(*args)
        serial = work < work_min or items <= step
        if entry is None:
            programs.unrecorded(f"the band kernel {name} (no C entry)")
        if serial and (entry is None or not programs.recording_open()):
            return kernel(*args, 0, items)  # (no task: the same kernel, without the hand-over's Python)
        parts = [(0, items)] if serial else chunks(items, step, threads.threads_unless_set())
        if entry is None:
            results = threads.over_blocks(lambda lo, hi: kernel(*args, lo, hi), parts)
            return sum(r[0] for r in results), sum(r[1] for r in results)
        flags = np.empty((len(parts), 2))
        run_blocks(entry, lambda k, lo, hi: (*args, lo, hi), parts, flags)
        return int(sum(flags[:, 0].tolist())), sum(flags[:, 1].tolist())
    drive.__name__ = drive.__qualname__ = "drive" + name
    drive.kernel = kernel
    return drive
