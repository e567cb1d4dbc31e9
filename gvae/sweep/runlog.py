"""What a run's process (:mod:`gvae.sweep_child`) and the sweep's worker that started it agree on: the line
the process writes into the run's ``sweep.log`` before each gvae command, and reading back which commands
started; the pipe it closes once it answers Ctrl-C. Standard library only: the run's process imports it
before NumPy loads."""
import time

# The environment variable naming the pipe end a run's process closes once it answers SIGINT. It starts
# with SIGINT ignored, as its worker has it, and a SIGINT in its first moments was lost (the run trained
# on until its worker was killed): the worker interrupts no run before the pipe is closed.
READY_VARIABLE = "GVAE_SWEEP_READY_FD"


def header(args):
    """The line written before the gvae command ``args`` (its arguments after ``gvae``)."""
    return f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {_named(args)}"


def _named(args):
    return f"gvae {' '.join(args)}"


def commands_started(lines, commands):
    """How many of ``commands`` (argument lists, run in order) have their header among ``lines``."""
    started = 0
    for line in lines:
        if started < len(commands) and line.startswith("[") and line.endswith("] " + _named(commands[started])):
            started += 1
    return started
