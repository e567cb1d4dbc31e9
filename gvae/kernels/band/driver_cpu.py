"""The one serial-or-parallel driver of the band kernels.

A kernel's work is a range of items (pairs, factors, blocks of factors) cut into chunks, each run by a
chunk function ``run(*args, lo, hi) -> (bad, checksum)`` (see common_cpu); the driver runs the chunks
and sums the pairs. Below a threshold of work the whole range is one chunk run serially: a parallel
region costs tens of microseconds to wake the threads, and on a busy 2-core machine it can wait a whole
scheduler tick (~8 ms) for a thread that is not running. Above it, the chunks run in a prange.
"""
import sys

from numba import prange

from ..jit import jit
from .variants_cpu import specialise, template

# prange chunks per call: enough to balance 16 threads, few enough that per-chunk set-up is negligible.
_MAX_CHUNKS = 64
# Work (elements x diagonals of the per-pair loops) below which a call runs serially: ~0.3 ms.
_PARALLEL_MIN = 1 << 18


@jit
def _nchunks(p):
    return max(1, min(p, _MAX_CHUNKS))


@jit
def _chunk(c, nch, items, step):
    """Items [lo, hi) of chunk c of nch over items, cut at multiples of step."""
    nb = (items + step - 1) // step
    return min(items, c * nb // nch * step), min(items, (c + 1) * nb // nch * step)


@jit
def pair_plan(L, offs, b, out):
    """The plan of the kernels over (factor, sample) pairs, L (F, K, n) and b, out (S, F, n): F S pairs,
    n K work each."""
    F, K, n = L.shape
    P = F * b.shape[0]
    return P, 1, P * n * K, _PARALLEL_MIN


@template(parallel=True, error_model="numpy")
def _drive(*args):
    """Binds ``_plan(*args) -> (items, step, work, work_min)`` and ``_run(*args, lo, hi)``.
    Runs items [0, items) serially when work < work_min or one step holds them all, else over prange
    chunks cut at multiples of step; returns the summed (bad, checksum)."""
    items, step, work, work_min = _plan(*args)
    if work < work_min or items <= step:
        return _run(*args, 0, items)
    bad = 0
    chk = 0.0
    nch = _nchunks((items + step - 1) // step)
    for c in prange(nch):
        lo, hi = _chunk(c, nch, items, step)
        bc, cc = _run(*args, lo, hi)
        bad += bc
        chk += cc
    return bad, chk


def driver(plan, run):
    """The kernel ``(*args) -> (bad, checksum)`` that runs the chunk function ``run`` (jitted) over the
    work that the jitted ``plan(*args)`` describes; named after ``run``."""
    fn = run.py_func
    return specialise((_drive,), fn.__name__, sys.modules[fn.__module__], _plan=plan, _run=run)[0]
