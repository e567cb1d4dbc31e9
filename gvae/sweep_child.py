"""``python -P -m gvae.sweep_child PARENT_PID COMMANDS``: gvae commands (``gvae.cli``), one after the
other, in a process that stops when process PARENT_PID, the Dask worker that started it, has ended.

COMMANDS is a JSON list of argument lists (``[["train", ...], ["eval", ...]]``): a run's training and its
evaluation share one process, so the evaluation finds NumPy, Numba and the run's kernels loaded (a
new process would import them all again). Before each command a line ``[date time] gvae ARGS`` is printed
(:mod:`gvae.sweep.runlog`); the first command that fails ends the process with its exit status, and the
header lines tell which one it was (:func:`gvae.sweep.execute.run_job`).

A worker that dies (its sweep killed, its node lost) does not take its child processes with it; a run
left training would hold its folder's lock against the sweep's next attempt. So a thread watches the
parent and, once it is gone, interrupts the command as Ctrl-C would: gvae train stops at once with its
last finished epoch on disk, resumable. The child answers SIGINT even when it was started with SIGINT
ignored, as every process started in the background by a non-interactive shell (``gvae sweep ... &``)
is: without that, an orphaned run would train on. Started by a sweep's worker, it closes the pipe end named
by ``GVAE_SWEEP_READY_FD`` once it answers SIGINT: before that a SIGINT would be lost, and the worker
waits for it before it interrupts the run. Only the standard library is imported before gvae.cli, which
sets the thread counts before NumPy loads (every command of one child has the same ``--threads``). Like
``gvae.cli``, this is a process's entry point, so it sits beside it at the top of the package: the sweep
(below the commands) names it only as a module to run."""
import json
import os
import signal
import sys
import threading
import time


def stop_with_parent(parent, period=1.0):
    """Wait until this process's parent is no longer ``parent`` (it ended: the process was handed to
    another), then interrupt the main thread with SIGINT."""
    while os.getppid() == parent:
        time.sleep(period)
    os.kill(os.getpid(), signal.SIGINT)


def main(argv):
    parent, commands = int(argv[0]), json.loads(argv[1])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The watchdog holds SIGINT back (it inherits the mask it starts with), so that a SIGINT sent to the
    # process always reaches the main thread, also while gvae.cli holds it back there during its imports.
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if hasattr(signal, "pthread_sigmask") else None
    threading.Thread(target=stop_with_parent, args=(parent,), daemon=True).start()
    if before is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    try:
        from .sweep.runlog import READY_VARIABLE, header
        told = os.environ.pop(READY_VARIABLE, None)
        if told is not None:  # from here its worker may interrupt the run: inside this try, which answers it
            os.close(int(told))
        from .cli import main as gvae
        for args in commands:
            print("\n" + header(args), flush=True)
            try:
                code = gvae(args)
            except SystemExit as e:  # argparse's exits: --help, --version, arguments it refuses
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
            if code:
                return code
    except KeyboardInterrupt:  # before the first command or between two (each command answers it itself)
        print("gvae: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
