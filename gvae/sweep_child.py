"""``python -P -m gvae.sweep_child PARENT_PID ARGS...``: the gvae command ``gvae ARGS...`` (``gvae.cli``) in a
process that stops when process PARENT_PID, the Dask worker that started it, has ended.

A worker that dies (its sweep killed, its node lost) does not take its child processes with it; a run
left training would hold its folder's lock against the sweep's next attempt. So a thread watches the
parent and, once it is gone, interrupts the command as Ctrl-C would: gvae train stops at once with its
last finished epoch on disk, resumable. The child answers SIGINT even when it was started with SIGINT
ignored, as every process started in the background by a non-interactive shell (``gvae sweep ... &``)
is: without that, an orphaned run would train on. Only the standard library is imported before gvae.cli, which
sets the thread counts before NumPy loads. Like ``gvae.cli``, this is a process's entry point, so it sits
beside it at the top of the package: the sweep (below the commands) names it only as a module to run."""
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
    parent = int(argv[0])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=stop_with_parent, args=(parent,), daemon=True).start()
    from .cli import main as gvae
    return gvae(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
