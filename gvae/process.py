"""Setting up a process that runs a gvae command (the ``gvae`` console script, a sweep's run): the thread
counts of the BLAS, OpenMP and Numba, read from ``--threads`` before NumPy and Numba load, and gvae's own
threads (one per core the process may use unless ``--threads`` says otherwise).

This module imports only the standard library at its top, so :func:`prepare` can still set the variables
that OpenBLAS, OpenMP and Numba read when they load. It changes the environment only when called: importing
gvae sets nothing."""
import argparse
import os
import sys

# What --threads sets, in this process only: OpenMP, MKL (when NumPy uses it) and Numba. OpenBLAS runs on
# one thread in gvae's own process: gvae splits its products over its own threads (kernels/threads.py),
# and an OpenBLAS pool beside them would spin on the cores they need.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def thread_count(argv):
    """The value of ``--threads`` among ``argv`` (None when absent or not a positive int: the full
    parser then names the problem)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", default=None)
    known, _ = pre.parse_known_args(argv)
    try:
        n = int(known.threads)
    except (TypeError, ValueError):
        return None
    return n if n >= 1 else None


def set_threads(n):
    """Use n threads for the BLAS, OpenMP and Numba: the environment variables they read when they load,
    and Numba's run-time setting if it is loaded already (as when a command is run from Python).

    A loaded Numba keeps its NUMBA_NUM_THREADS variable as it is: Numba reads it again at every
    compilation and refuses any new value once its threads have started, so a changed variable would
    break every later compilation in the calling process."""
    numba = sys.modules.get("numba")
    for name in THREAD_VARIABLES if numba is None else set(THREAD_VARIABLES) - {"NUMBA_NUM_THREADS"}:
        os.environ[name] = str(n)
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def prepare(argv):
    """Set this process up for the gvae command ``argv`` (its arguments after ``gvae``), before anything
    starts a thread pool: the thread variables from ``--threads``, then gvae's own threads (one per
    available core unless ``--threads`` says otherwise)."""
    # Idle OpenMP threads (Numba's parallel kernels) sleep instead of spinning: on a 2-core machine a
    # spinning thread holds the core an OpenBLAS thread needs, and a 60 us call was seen to take a
    # scheduler tick (8 ms). Set here, in gvae's own process, before any kernel starts a thread pool (a
    # library user sets it themselves, see the README); a value already set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    n = thread_count(argv)
    if n is not None:
        set_threads(n)
    from .kernels.threads import available_cores, set_threads as set_kernel_threads
    # gvae's own threads split its GEMMs and elementwise kernels (see gvae/kernels/threads.py).
    set_kernel_threads(n if n is not None else available_cores())
