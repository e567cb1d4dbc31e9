"""Setting up a process that runs a gvae command (the ``gvae`` console script, a sweep's run): the thread
counts of the BLAS and OpenMP, read from ``--threads`` before NumPy loads, and gvae's own threads (one per
core the process may use unless ``--threads`` says otherwise). gvae runs no OpenMP or Numba thread pool
of its own: every parallel kernel runs on gvae's threads (kernels/cpu/threads.py).

This module imports only the standard library at its top, so :func:`prepare` can still set the variables
that OpenBLAS, MKL and OpenMP read when they load. It changes the environment only when called: importing
gvae sets nothing."""
import argparse
import os
import signal

# What --threads sets, in this process only: OpenMP and MKL (when NumPy uses it). OpenBLAS runs on one
# thread in gvae's own process: gvae splits its products over its own threads (kernels/cpu/threads.py), and
# an OpenBLAS pool beside them would spin on the cores they need.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_count(argv):
    """The value of ``--threads`` among ``argv`` (None when absent or not a positive int: the full
    parser then names the problem)."""
    # exit_on_error=False: a --threads without a value is left to the full parser to name, in its own words.
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--threads", default=None)
    try:
        known, _ = pre.parse_known_args(argv)
        n = int(known.threads)
    except (argparse.ArgumentError, TypeError, ValueError):
        return None
    return n if n >= 1 else None


def set_threads(n):
    """Use n threads for the BLAS and OpenMP: the environment variables they read when they load."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n)


def prepare(argv):
    """Set this process up for the gvae command ``argv`` (its arguments after ``gvae``), before anything
    starts a thread pool: the thread variables from ``--threads``, then gvae's own threads (one per
    available core unless ``--threads`` says otherwise)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    n = thread_count(argv)
    if n is not None:
        set_threads(n)
    from .kernels import available_cores, set_threads as set_kernel_threads
    # gvae's own threads split its GEMMs and elementwise kernels (see gvae/kernels/cpu/threads.py).
    set_kernel_threads(n if n is not None else available_cores())


def load_uninterrupted(load):
    """Call ``load()`` (the imports of NumPy, Numba and gvae's kernels) with SIGINT held back in this
    thread, and return whether one arrived meanwhile (taken, so never delivered). A Ctrl-C that lands in
    NumPy's import of its C extension comes out as an unrelated ImportError ("PyCapsule_Import could not
    import module datetime"), not as an interruption. Other threads of the process must hold SIGINT back
    too (as :mod:`gvae.sweep_child`'s watchdog does), or the kernel delivers it to them; where there is
    no per-thread signal mask, ``load()`` runs as it is."""
    if not hasattr(signal, "pthread_sigmask"):
        load()
        return False
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        load()
    finally:
        came = signal.SIGINT in signal.sigpending()
        if came:
            signal.sigtimedwait({signal.SIGINT}, 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    return came
