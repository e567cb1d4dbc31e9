"""Every piece of process-wide state of gvae's CPU runtime, in one object: :data:`RUNTIME`.

Each field belongs to one module (named beside it), which alone reads and writes it; they are kept here
so that a reader finds all that a process remembers between kernel calls in one place, and so that a
forked child resets in one place what it cannot take over from its parent (:meth:`Runtime.after_fork`).
Constants decided once at import (whether Numba can cache, :mod:`compile_cache`) are not state: they
stay with their modules.
"""
import contextvars
import os
import threading

from .compilations import Compilations

__all__ = ["Runtime", "RUNTIME"]


class Runtime:
    """The process-wide state of the CPU runtime (one per process: :data:`RUNTIME`)."""

    def __init__(self):
        # threads: the process's thread count and whether set_threads chose it; the calling thread's own
        # count inside cores_unless_set (a context variable: each thread, or asyncio task, has its own);
        # the worker threads, the lock a call holds while it uses them, and the turns of a spin loop that
        # take a second here (measured once).
        self.threads = 1
        self.threads_set = False
        self.own_threads = contextvars.ContextVar("gvae_threads", default=None)
        self.workers = []
        self.pool_lock = threading.Lock()
        self.rounds_per_second = None
        # programs: the program this thread's calls are being recorded into, if any (a context variable).
        self.recording = contextvars.ContextVar("gvae_recording", default=None)
        # entries: the compiled C entry of each declared entry and variant, keyed (entry, dtype, read-only
        # flags) (kept for the life of the process: a worker may be about to call its address), and the lock under which one is
        # compiled.
        self.entries = {}
        self.compile_lock = threading.Lock()
        # compilations: the announcement of compilation.
        self.compilations = Compilations()
        # blas: what was found of the BLAS NumPy loaded ("controls": its thread-count functions, "library":
        # its kind and path, "core", "gemm" and "triangular" addresses) and "hold", the context that holds
        # it to one thread.
        self.blas = {}
        # tuning: whether it is on (None: not read from the environment yet), this machine's identity,
        # the kept plans (None: not read yet), whether the plan folder is writable (None: not checked), and
        # the generation of the plans (changed when they are cleared).
        self.tuning_on = None
        self.tuning_identity = None
        self.tuning_plans = None
        self.tuning_writable = None
        self.tuning_generation = 0
        # matmul_cpu: the plans decided in this process ((geometry, thread count, generation) -> name), and
        # the tiny products handed to every thread after each candidate of a tuning (by thread count).
        self.products_decided = {}
        self.handover_products = {}

    def after_fork(self):
        """In a forked child: no workers (the parent's threads do not exist here), fresh locks (a thread
        of the parent may have held one), no burst of compilation under way, and the BLAS's thread count
        back where a thread of the parent held it at one (that thread's exit never comes here)."""
        self.workers = []
        self.pool_lock = threading.Lock()
        self.compile_lock = threading.Lock()
        self.compilations.reset()
        hold = self.blas.get("hold")
        if hold is not None:
            hold.after_fork()


RUNTIME = Runtime()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=RUNTIME.after_fork)
