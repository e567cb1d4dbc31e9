"""The line a run's process (:mod:`gvae.sweep_child`) writes into the run's ``sweep.log`` before each gvae
command, and reading back which commands started. Standard library only: the run's process imports it
before NumPy loads."""
import time


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
